"""Low-level helpers for `S3BlobStore`: error translation, body reading, multipart uploads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from gateway.storage.errors import StorageUnavailable

__all__ = [
    "MAX_COPY_SIZE",
    "NOT_FOUND",
    "PRECONDITION",
    "BodyReader",
    "Multipart",
    "is_error",
    "s3_errors",
]

MAX_COPY_SIZE = 5 << 30
"""Largest object a single CopyObject may copy; bigger ones are copied part by part."""
NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}
PRECONDITION = {"412", "PreconditionFailed", "ConditionalRequestConflict"}


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def is_error(exc: BaseException, codes: set[str]) -> bool:
    return isinstance(exc, ClientError) and (
        _code(exc) in codes
        or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")) in codes
    )


@contextlib.contextmanager
def s3_errors(action: str) -> Iterator[None]:
    """Turn botocore failures into ``StorageUnavailable``; only the error code reaches clients."""
    try:
        yield
    except ClientError as exc:
        raise StorageUnavailable(f"{action} failed: {_code(exc)}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"{action} failed: {type(exc).__name__}") from exc


class BodyReader(Iterator[bytes]):
    """Chunks of a GetObject body; checks the length and closes the connection when done."""

    def __init__(self, body: Any, length: int, chunk_size: int) -> None:
        self._body: Any = body
        self._left = length
        self._chunk_size = chunk_size

    def __iter__(self) -> BodyReader:
        return self

    def __next__(self) -> bytes:
        if self._body is None or self._left <= 0:
            self.close()
            raise StopIteration
        try:
            data: bytes = self._body.read(min(self._chunk_size, self._left))
        except Exception as exc:  # urllib3/botocore read errors: the store failed mid-stream
            self.close()
            raise StorageUnavailable(f"reading blob failed: {type(exc).__name__}") from exc
        if not data:
            self.close()
            raise StorageUnavailable("object store ended the blob early")
        self._left -= len(data)
        return data

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()

    def __del__(self) -> None:
        self.close()


class Multipart:
    """One S3 multipart upload: parts added in order, completed or aborted exactly once."""

    def __init__(self, client: Any, bucket: str, key: str, upload_id: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id
        self.parts: list[dict[str, Any]] = []
        self.done = False

    @classmethod
    def create(cls, client: Any, bucket: str, key: str) -> Multipart:
        with s3_errors("starting multipart upload"):
            response = client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType="application/octet-stream"
            )
        return cls(client, bucket, key, response["UploadId"])

    def add(self, data: bytes) -> None:
        number = len(self.parts) + 1
        with s3_errors("uploading part"):
            response = self.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                PartNumber=number, Body=data,
            )  # fmt: skip
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def complete(self) -> None:
        with s3_errors("completing multipart upload"):
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )  # fmt: skip
        self.done = True

    def discard(self) -> None:
        """Abort if not completed, else delete what was completed (a staging object)."""
        with contextlib.suppress(ClientError, BotoCoreError):
            if self.done:
                if "/staging/" in f"/{self.key}":
                    self.client.delete_object(Bucket=self.bucket, Key=self.key)
            else:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )

    @classmethod
    def copy(cls, client: Any, bucket: str, source: str, dest: str, size: int) -> None:
        """Server-side copy of an object larger than CopyObject allows, 1 GiB per part."""
        upload = cls.create(client, bucket, dest)
        step = 1 << 30
        try:
            for number, first in enumerate(range(0, size, step), start=1):
                last = min(first + step, size) - 1
                with s3_errors("copying part"):
                    response = client.upload_part_copy(
                        Bucket=bucket, Key=dest, UploadId=upload.upload_id, PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": source},
                        CopySourceRange=f"bytes={first}-{last}",
                    )  # fmt: skip
                upload.parts.append(
                    {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}
                )
            upload.complete()
        except BaseException:
            upload.discard()
            raise
