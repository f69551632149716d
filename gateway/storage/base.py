"""The `BlobStore` protocol every blob backend implements, and the argument checks they share.

Blobs are immutable byte strings addressed by the lowercase hex sha256 of their content, so a
put is idempotent and two writers of the same content never conflict.

All methods are synchronous and may block on disk or network I/O. The gateway calls them from a
thread pool (``anyio.to_thread.run_sync`` / ``starlette.concurrency.iterate_in_threadpool``),
never directly on the event loop. Implementations must therefore be thread safe.

Every method raises only :class:`~gateway.storage.errors.StorageError` subclasses (plus whatever
the caller's own ``chunks`` iterable raises, which passes through untouched).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from gateway.storage.errors import InvalidDigest, InvalidRange, InvalidUploadId

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_UPLOAD_ID_LENGTH",
    "BlobInfo",
    "BlobStore",
    "UploadInfo",
    "check_range",
    "check_sha256",
    "check_upload_id",
]

DEFAULT_CHUNK_SIZE = 1 << 20
"""Read size for :meth:`BlobStore.open_range`: large enough that per-chunk overhead vanishes."""

MAX_UPLOAD_ID_LENGTH = 128

# fullmatch + explicit classes: `$` would accept a trailing newline and `\d`/`\w` accept
# non-ASCII digits and letters.
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_UPLOAD_ID_LENGTH)  # noqa: UP031


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """A resumable upload in progress: its id and when it last received bytes (UTC)."""

    upload_id: str
    last_activity: datetime


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its lowercase hex sha256 and its length in bytes."""

    sha256: str
    size: int


def check_sha256(sha256: object) -> str:
    """Return ``sha256`` if it is 64 lowercase hex characters, else raise ``InvalidDigest``.

    Backends call this before the value goes anywhere near a path or an object key, which is
    what keeps ``..``, ``/``, NUL and absolute paths out of the filesystem.
    """
    if not isinstance(sha256, str) or _SHA256_RE.fullmatch(sha256) is None:
        raise InvalidDigest(f"not a sha256 digest (64 lowercase hex characters): {sha256!r:.80}")
    return sha256


def check_upload_id(upload_id: object) -> str:
    """Return ``upload_id`` if it is 1-128 characters of ``[A-Za-z0-9_-]``, else raise."""
    if not isinstance(upload_id, str) or _UPLOAD_ID_RE.fullmatch(upload_id) is None:
        raise InvalidUploadId(
            f"upload ids are 1-{MAX_UPLOAD_ID_LENGTH} characters of A-Z a-z 0-9 _ -: "
            f"{upload_id!r:.80}"
        )
    return upload_id


def check_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Resolve a half-open range ``[start, end)`` against a blob of ``size`` bytes.

    ``end=None`` means "to the end". Requires ``0 <= start <= end <= size``; an empty range is
    allowed (it is how an empty blob is read). Nothing is clamped: clamping an HTTP
    ``Range`` header that runs past the end is the HTTP layer's decision, not storage's.
    """
    # bool is an int subclass; refusing it catches swapped-argument bugs early.
    if isinstance(start, bool) or not isinstance(start, int):
        raise InvalidRange(start=0, end=None, size=size)
    if end is not None and (isinstance(end, bool) or not isinstance(end, int)):
        raise InvalidRange(start=start, end=None, size=size)
    stop = size if end is None else end
    if not 0 <= start <= stop <= size:
        raise InvalidRange(start=start, end=end, size=size)
    return start, stop


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed blob storage: one implementation per backend (local disk, S3, ...).

    Ranges are **half-open, like Python slices**: ``open_range(h, start, end)`` yields
    ``blob[start:end]``. HTTP ``Range: bytes=a-b`` is inclusive, so it maps to
    ``open_range(h, a, b + 1)``.
    """

    def has(self, sha256: str) -> bool:
        """True if the blob is stored."""
        ...

    def size(self, sha256: str) -> int:
        """Length of the blob in bytes; ``BlobNotFound`` if absent."""
        ...

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        """Store the concatenation of ``chunks``, hashing while writing.

        Raises ``DigestMismatch`` if ``expected_sha256`` is given and differs, ``BlobTooLarge``
        as soon as more than ``max_bytes`` arrive. On any failure nothing is left behind and no
        partially written blob is ever visible to readers. Storing an existing blob again is a
        no-op that returns the same ``BlobInfo``.
        """
        ...

    def put_file(self, path: Path, expected_sha256: str | None = None) -> BlobInfo:
        """Store the file at ``path`` (same guarantees as ``put_stream``).

        A missing or unreadable source file raises the plain ``OSError``: it is the caller's
        input that is wrong, not the store.
        """
        ...

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        end: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[bytes]:
        """Stream ``blob[start:end]`` in chunks of at most ``chunk_size`` bytes.

        The range is half-open (``end`` exclusive, ``None`` = to the end). Validation happens
        eagerly, at the call, so ``BlobNotFound``/``InvalidRange`` can become a 404/416 before
        any response has started. The iterator may hold a file or connection open: exhaust it
        or call its ``close()``.
        """
        ...

    def local_path(self, sha256: str) -> Path | None:
        """Path of the blob on local disk for zero-copy serving, or None for remote backends.

        Local backends raise ``BlobNotFound`` for an absent blob, so None only ever means
        "not on this machine". The file must be treated as read-only.
        """
        ...

    def presigned_url(
        self, sha256: str, *, expires_in: int, filename: str | None = None
    ) -> str | None:
        """A URL that serves the blob directly from the backend, or None to stream it instead.

        Valid for at most ``expires_in`` seconds (backends cap it lower still); ``filename``
        becomes the download's ``Content-Disposition`` name. Only called after the gateway's
        own checks (link, grant, budget), so the URL must be short-lived. Local backends
        return None. No request is made: the caller knows from its database that the blob is
        stored.
        """
        ...

    def delete(self, sha256: str) -> None:
        """Remove the blob. Idempotent: deleting an absent blob is not an error."""
        ...

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob, in no particular order."""
        ...

    def begin_upload(self, upload_id: str, max_bytes: int | None = None) -> int:
        """Start a resumable upload, or find an existing one; return its current offset.

        Idempotent so that a client whose "create" request timed out can simply retry it.
        ``max_bytes`` (fixed at creation) bounds the total size of the upload.
        """
        ...

    def append_upload(self, upload_id: str, offset: int, chunk: bytes) -> int:
        """Append ``chunk`` at ``offset`` and return the new offset.

        ``offset`` must equal the upload's current offset, else ``UploadOffsetMismatch``
        (whose ``expected_offset`` tells the client where to resume). Bytes are durable once
        this returns.
        """
        ...

    def upload_offset(self, upload_id: str) -> int:
        """How many bytes of the upload have been durably received."""
        ...

    def install_upload(self, upload_id: str, expected_sha256: str) -> BlobInfo:
        """Verify the upload's digest and store its bytes as that blob; keep the upload.

        The upload stays, with its offset, until the caller discards it with ``abort_upload``,
        which it does once the blob is recorded elsewhere; nothing done to the upload
        afterwards can change the blob. A crash in
        between therefore leaves the complete upload under its id: installing it again
        verifies the same bytes once more and returns the same ``BlobInfo``, so the client
        never re-sends a blob whose bytes arrived. Installing over an existing blob writes
        nothing (content addressing: the bytes are the same). On ``DigestMismatch`` the
        upload is discarded, since its bytes can never become the expected blob.
        """
        ...

    def finish_upload(self, upload_id: str, expected_sha256: str) -> BlobInfo:
        """``install_upload`` then discard the upload: it is consumed either way."""
        ...

    def abort_upload(self, upload_id: str) -> None:
        """Discard an upload; ``UploadNotFound`` if there is none with that id."""
        ...

    def iter_uploads(self) -> Iterator[UploadInfo]:
        """Uploads begun and neither finished nor aborted (for sweeping abandoned ones)."""
        ...

    def remove_leftovers(self, before: datetime, *, apply: bool = True) -> list[str]:
        """Debris of interrupted operations untouched since ``before``; removed when ``apply``.

        A crash between taking an upload away from its id and deleting its bytes, or in the
        middle of a put, leaves data that no upload id and no blob reaches, so neither
        ``iter_uploads`` nor ``iter_blobs`` reports it. ``admin gc`` sweeps it with this.
        Returns one name per leftover, relative to the store (for the operator's report).
        """
        ...
