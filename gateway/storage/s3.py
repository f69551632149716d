"""`S3BlobStore`: blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW), for many replicas.

Key layout under an optional ``prefix``::

    blobs/sha256/<hex>                          one object per blob, written only once verified
    staging/<uuid>                              large put without a known digest, before its copy
    uploads/<upload_id>/meta                    resumable upload: {"token", "max_bytes"}
    uploads/<upload_id>/<token>/parts/<offset>  each acknowledged append, keyed by its offset
    uploads/<upload_id>/<token>/finishing       claim of the one replica discarding the upload

Nothing about an upload lives in process memory, so any replica can take the next chunk.
Appends are staged as one object per chunk rather than as S3 multipart parts because parts
must be at least 5 MiB (clients send smaller chunks) and UploadPart has no compare-and-set:
the conditional create (``If-None-Match: *``) of ``parts/<offset>`` is what makes two racing
appends at one offset end with exactly one winner, on any replica. The offset is the end of
the chain of parts starting at 0. ``install_upload`` streams the chain through the same
verified write path as ``put_stream`` and leaves the parts in place until ``abort_upload``, so
a replica that dies while finishing leaves an upload the next attempt installs without the
client re-sending it; ``remove_leftovers`` sweeps the parts and staging objects of steps a
crash cut in two.

A blob becomes visible only once its sha256 is verified: small blobs are hashed in memory and
written with one PutObject; large ones go through a multipart upload that is completed only
after the digest matched (straight to the content address when the digest is known up front,
else to a staging key that is then copied server side and deleted).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from gateway.storage._s3_io import (
    MAX_COPY_SIZE,
    NOT_FOUND,
    PRECONDITION,
    BodyReader,
    Multipart,
    is_error,
    s3_errors,
)
from gateway.storage._s3_uploads import S3Uploads
from gateway.storage.base import (
    DEFAULT_CHUNK_SIZE,
    BlobInfo,
    check_range,
    check_sha256,
)
from gateway.storage.errors import (
    BlobNotFound,
    BlobTooLarge,
    DigestMismatch,
    InvalidDigest,
)

__all__ = ["MIN_PART_SIZE", "S3BlobStore"]

MIN_PART_SIZE = 5 << 20
"""S3's smallest multipart part (all but the last)."""


class S3BlobStore(S3Uploads):
    """Content-addressed blobs in one bucket. Thread safe; any number of processes may share it.

    ``client`` is a boto3 S3 client (thread safe); ``presign_client`` one configured with the
    endpoint clients reach (SigV4 signs the host), defaulting to ``client``. The resumable
    uploads are the :class:`~gateway.storage._s3_uploads.S3Uploads` half.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = "",
        presign_client: Any = None,
        presign_max_seconds: int = 300,
        part_size: int = 8 << 20,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if presign_max_seconds < 1:
            raise ValueError("presign_max_seconds must be positive")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.presign_client = presign_client if presign_client is not None else client
        self.presign_max_seconds = presign_max_seconds
        self.part_size = part_size

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # -- keys ------------------------------------------------------------------------------

    def _blob_key(self, sha256: str) -> str:
        return f"{self.prefix}blobs/sha256/{check_sha256(sha256)}"

    def check_ready(self) -> None:
        """Raise ``StorageUnavailable`` unless the bucket exists and our credentials reach it.

        For /readyz: a HEAD of a missing object and of a missing bucket are both a bare 404,
        so ``has()`` alone cannot tell "no such blob" from "no such bucket".
        """
        with s3_errors("checking the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    # -- blobs -----------------------------------------------------------------------------

    def _head(self, key: str) -> int | None:
        with s3_errors("checking blob"):
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if is_error(exc, NOT_FOUND):
                    return None
                raise
        return int(response["ContentLength"])

    def has(self, sha256: str) -> bool:
        return self._head(self._blob_key(sha256)) is not None

    def size(self, sha256: str) -> int:
        size = self._head(self._blob_key(sha256))
        if size is None:
            raise BlobNotFound(sha256)
        return size

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
            if self.has(expected_sha256):
                # Same content, same key: verify what was sent, write nothing.
                return self._hash_only(chunks, expected_sha256, max_bytes)
        digest = hashlib.sha256()
        buffer = bytearray()
        size = 0
        upload: Multipart | None = None
        try:
            for chunk in chunks:
                size += len(chunk)
                # Checked before buffering or sending, so an oversized stream costs nothing.
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                digest.update(chunk)
                buffer += chunk
                while len(buffer) >= self.part_size:
                    if upload is None:
                        key = (
                            self._blob_key(expected_sha256)
                            if expected_sha256 is not None
                            else f"{self.prefix}staging/{uuid.uuid4().hex}"
                        )
                        upload = Multipart.create(self.client, self.bucket, key)
                    upload.add(bytes(buffer[: self.part_size]))
                    del buffer[: self.part_size]
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and not hmac.compare_digest(sha256, expected_sha256):
                raise DigestMismatch(expected=expected_sha256, actual=sha256)
            if upload is None:
                self._put_small(sha256, bytes(buffer))
            else:
                if buffer:
                    upload.add(bytes(buffer))
                upload.complete()  # the commit point: the object appears whole or not at all
                if expected_sha256 is None:
                    self._install_staged(upload.key, sha256, size)
        except BaseException:
            if upload is not None:
                upload.discard()
            raise
        return BlobInfo(sha256=sha256, size=size)

    def _hash_only(
        self, chunks: Iterable[bytes], expected_sha256: str, max_bytes: int | None
    ) -> BlobInfo:
        digest = hashlib.sha256()
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BlobTooLarge(max_bytes)
            digest.update(chunk)
        sha256 = digest.hexdigest()
        if not hmac.compare_digest(sha256, expected_sha256):
            raise DigestMismatch(expected=expected_sha256, actual=sha256)
        return BlobInfo(sha256=sha256, size=size)

    def _put_small(self, sha256: str, data: bytes) -> None:
        with s3_errors("writing blob"):
            try:
                # If-None-Match: a blob is immutable, so an existing one is left untouched.
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._blob_key(sha256),
                    Body=data,
                    ContentType="application/octet-stream",
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if not is_error(exc, PRECONDITION):
                    raise

    def _install_staged(self, staging_key: str, sha256: str, size: int) -> None:
        """Copy a verified staging object to its content address, then drop the staging copy."""
        try:
            if not self.has(sha256):
                with s3_errors("installing blob"):
                    if size <= MAX_COPY_SIZE:
                        self.client.copy_object(
                            Bucket=self.bucket,
                            Key=self._blob_key(sha256),
                            CopySource={"Bucket": self.bucket, "Key": staging_key},
                        )
                    else:
                        Multipart.copy(
                            self.client, self.bucket, staging_key, self._blob_key(sha256), size
                        )
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.delete_object(Bucket=self.bucket, Key=staging_key)

    def put_file(self, path: Path, expected_sha256: str | None = None) -> BlobInfo:
        with open(path, "rb") as source:
            return self.put_stream(
                iter(lambda: source.read(DEFAULT_CHUNK_SIZE), b""), expected_sha256
            )

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        end: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[bytes]:
        key = self._blob_key(sha256)
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        size = self.size(sha256)
        first, stop = check_range(start, end, size)
        if first == stop:
            return iter(())
        with s3_errors("reading blob"):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={first}-{stop - 1}"
                )
            except ClientError as exc:
                if is_error(exc, NOT_FOUND):  # deleted between the HEAD and the GET
                    raise BlobNotFound(sha256) from None
                raise
        return BodyReader(response["Body"], stop - first, chunk_size)

    def local_path(self, sha256: str) -> Path | None:
        check_sha256(sha256)
        return None

    def presigned_url(
        self, sha256: str, *, expires_in: int, filename: str | None = None
    ) -> str | None:
        """A SigV4 GET URL valid for ``min(expires_in, presign_max_seconds)`` seconds.

        None when less than a second is left: the caller then streams instead. The blob's
        existence is not checked (no request is made); callers redirect only to blobs their
        database says are stored.
        """
        key = self._blob_key(sha256)
        lifetime = min(int(expires_in), self.presign_max_seconds)
        if lifetime < 1:
            return None
        params: dict[str, str] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseCacheControl": "no-store",
        }
        if filename:
            # RFC 6266 filename*: any name survives, and quotes or CR/LF cannot break the header.
            params["ResponseContentDisposition"] = (
                f"attachment; filename*=UTF-8''{quote(filename.rsplit('/', 1)[-1], safe='')}"
            )
        with s3_errors("signing a download URL"):
            url: str = self.presign_client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=lifetime
            )
        return url

    def delete(self, sha256: str) -> None:
        key = self._blob_key(sha256)
        with s3_errors("deleting blob"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        prefix = f"{self.prefix}blobs/sha256/"
        for item in self._list(prefix):
            name = item["Key"][len(prefix) :]
            try:
                check_sha256(name)
            except InvalidDigest:
                continue  # stray object: not ours to report
            yield BlobInfo(sha256=name, size=int(item["Size"]))
