"""`make_blob_store(settings)`: the configured `BlobStore` backend (boto3 imported only for S3)."""

from __future__ import annotations

from typing import Any

from gateway.config import Settings
from gateway.storage.base import BlobStore
from gateway.storage.local import LocalBlobStore

__all__ = ["make_blob_store", "make_s3_client"]


def make_s3_client(settings: Settings, *, endpoint_url: str | None = None) -> Any:
    """A thread-safe boto3 S3 client signing with SigV4, from the ``s3_*`` settings."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    secret = settings.s3_secret_access_key
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        # Each concurrent download holds one connection while it streams.
        max_pool_connections=64,
        # Newer botocore adds CRC checksums by default, which some S3-compatible stores refuse.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
    )


def make_blob_store(settings: Settings) -> BlobStore:
    """The blob store ``settings.storage_backend`` names."""
    if settings.storage_backend == "s3":
        from gateway.storage.s3 import S3BlobStore

        assert settings.s3_bucket is not None  # guaranteed by Settings validation
        client = make_s3_client(settings)
        presign_client = client
        if settings.s3_public_endpoint_url:
            presign_client = make_s3_client(settings, endpoint_url=settings.s3_public_endpoint_url)
        return S3BlobStore(
            client,
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            presign_client=presign_client,
            presign_max_seconds=settings.s3_presign_max_seconds,
            part_size=settings.s3_part_size_bytes,
        )
    return LocalBlobStore(settings.resolved_blob_dir)
