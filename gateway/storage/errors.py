"""Errors of the blob stores, each a :class:`gateway.errors.GatewayError` with a stable code.

Exception tree (second parent in brackets, so generic HTTP handlers also catch them)::

    GatewayError
    +-- StorageError                   500 storage_error (root of this package)
        +-- InvalidDigest              400 invalid_digest          [BadRequest]
        +-- InvalidUploadId            400 invalid_upload_id       [BadRequest]
        +-- BlobNotFound               404 blob_not_found          [NotFound]
        +-- UploadNotFound             404 upload_not_found        [NotFound]
        +-- UploadOffsetMismatch       409 upload_offset_mismatch  [Conflict]
        +-- BlobTooLarge               413 blob_too_large          [PayloadTooLarge]
        +-- InvalidRange               416 invalid_range
        +-- DigestMismatch             422 digest_mismatch         [ValidationFailed]
        +-- StorageUnavailable         503 storage_unavailable     [ServiceUnavailable]

Details a client needs to recover travel both as attributes and in ``extra``/``headers`` so the
problem+json handler can pass them on unchanged (``Upload-Offset``, ``Content-Range``).
"""

from __future__ import annotations

from gateway.errors import (
    BadRequest,
    Conflict,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
)

__all__ = [
    "StorageError",
    "InvalidDigest",
    "InvalidUploadId",
    "BlobNotFound",
    "UploadNotFound",
    "UploadOffsetMismatch",
    "BlobTooLarge",
    "InvalidRange",
    "DigestMismatch",
    "StorageUnavailable",
]


class StorageError(GatewayError):
    """Root of every error raised by :mod:`gateway.storage`."""

    code = "storage_error"
    status = 500
    title = "Storage error"


class InvalidDigest(StorageError, BadRequest):
    """A sha256 argument is not 64 lowercase hex characters."""

    code = "invalid_digest"
    status = 400
    title = "Invalid digest"


class InvalidUploadId(StorageError, BadRequest):
    """An upload id uses characters outside ``[A-Za-z0-9_-]`` or is too long."""

    code = "invalid_upload_id"
    status = 400
    title = "Invalid upload id"


class BlobNotFound(StorageError, NotFound):
    code = "blob_not_found"
    status = 404
    title = "Blob not found"

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no blob with sha256 {sha256}", extra={"sha256": sha256})
        self.sha256 = sha256


class UploadNotFound(StorageError, NotFound):
    code = "upload_not_found"
    status = 404
    title = "Upload not found"

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no upload in progress with id {upload_id!r}")
        self.upload_id = upload_id


class UploadOffsetMismatch(StorageError, Conflict):
    """An append did not start where the upload currently ends; resume from ``expected_offset``."""

    code = "upload_offset_mismatch"
    status = 409
    title = "Upload offset mismatch"

    def __init__(self, upload_id: str, *, expected_offset: int, offset: int) -> None:
        super().__init__(
            f"upload {upload_id!r} is at offset {expected_offset}, not {offset}; "
            f"resend from offset {expected_offset}",
            extra={"expected_offset": expected_offset, "offset": offset},
            headers={"Upload-Offset": str(expected_offset)},
        )
        self.upload_id = upload_id
        self.expected_offset = expected_offset
        self.offset = offset


class BlobTooLarge(StorageError, PayloadTooLarge):
    code = "blob_too_large"
    status = 413
    title = "Blob too large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"blob exceeds the limit of {max_bytes} bytes", extra={"max_bytes": max_bytes}
        )
        self.max_bytes = max_bytes


class InvalidRange(StorageError):
    code = "invalid_range"
    status = 416
    title = "Range not satisfiable"

    def __init__(self, *, start: int, end: int | None, size: int) -> None:
        super().__init__(
            f"range [{start}, {end if end is not None else 'end'}) is not within a "
            f"blob of {size} bytes",
            extra={"size": size},
            # RFC 9110 section 15.5.17: a 416 carries the current length.
            headers={"Content-Range": f"bytes */{size}"},
        )
        self.start = start
        self.end = end
        self.size = size


class DigestMismatch(StorageError, ValidationFailed):
    code = "digest_mismatch"
    status = 422
    title = "Digest mismatch"

    def __init__(self, *, expected: str, actual: str) -> None:
        super().__init__(
            f"content has sha256 {actual}, expected {expected}",
            extra={"expected_sha256": expected, "actual_sha256": actual},
        )
        self.expected = expected
        self.actual = actual


class StorageUnavailable(StorageError, ServiceUnavailable):
    """The backend cannot serve the request (disk full, permissions, network, corruption)."""

    code = "storage_unavailable"
    status = 503
    title = "Storage unavailable"
