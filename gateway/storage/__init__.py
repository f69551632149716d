"""Content-addressed blob storage: one `BlobStore` protocol, one module per backend."""

from __future__ import annotations

from gateway.storage.base import (
    DEFAULT_CHUNK_SIZE,
    BlobInfo,
    BlobStore,
    UploadInfo,
    check_range,
    check_sha256,
    check_upload_id,
)
from gateway.storage.errors import (
    BlobNotFound,
    BlobTooLarge,
    DigestMismatch,
    InvalidDigest,
    InvalidRange,
    InvalidUploadId,
    StorageError,
    StorageUnavailable,
    UploadNotFound,
    UploadOffsetMismatch,
)
from gateway.storage.local import LocalBlobStore

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "DigestMismatch",
    "InvalidDigest",
    "InvalidRange",
    "InvalidUploadId",
    "LocalBlobStore",
    "StorageError",
    "StorageUnavailable",
    "UploadNotFound",
    "UploadInfo",
    "UploadOffsetMismatch",
    "check_range",
    "check_sha256",
    "check_upload_id",
]
