"""Resumable blob uploads for a pending release: where to resume, receive a chunk, finish.

Possession, not knowledge: a blob is complete for an org only once that org has sent its
bytes and they hashed to the digest (``releases.record_blob`` then makes it a holder). That
another org stored the same bytes saves disk (the upload dedups against the stored copy) but
never the sending: digests of every file are public.

Finishing is crash safe. The store installs the verified upload as a blob but keeps the
upload; the holder row is committed; only then is the upload discarded. A process that dies
anywhere in between leaves a complete upload under the org's upload id, so the client's next
status call sees ``offset == size`` and a final empty chunk installs it again, verified,
without re-sending a byte.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.errors import BadRequest
from gateway.services.releases import expected_blob_size, holds_blob, record_blob
from gateway.storage import BlobStore, StorageUnavailable, UploadNotFound
from gateway.storage.base import check_sha256

__all__ = ["UploadProgress", "receive_chunk", "upload_status"]


@dataclass(frozen=True, slots=True)
class UploadProgress:
    sha256: str
    size: int
    offset: int
    complete: bool


def _upload_id(org_id: int, sha256: str) -> str:
    # One upload per org and blob: orgs never share (or see) each other's partial bytes.
    return f"org{org_id}-{sha256}"


def _org(principal: Principal) -> int:
    assert principal.org_id is not None  # expected_blob_size admits publishers of an org only
    return principal.org_id


def _complete(session: Session, store: BlobStore, org_id: int, sha256: str) -> bool:
    # Both: held (this org sent the bytes) and stored (gc or an operator may have removed them).
    return holds_blob(session, org_id, sha256) and store.has(sha256)


def upload_status(
    session: Session, store: BlobStore, principal: Principal, sha256: str
) -> UploadProgress:
    """How much of ``sha256`` the caller's org has sent: where its upload resumes."""
    check_sha256(sha256)
    size = expected_blob_size(session, principal, sha256)
    org_id = _org(principal)
    if _complete(session, store, org_id, sha256):
        return UploadProgress(sha256, size, size, complete=True)
    offset = store.begin_upload(_upload_id(org_id, sha256), max_bytes=size)
    return UploadProgress(sha256, size, offset, complete=False)


def receive_chunk(
    session: Session,
    store: BlobStore,
    principal: Principal,
    sha256: str,
    *,
    offset: int,
    chunk: bytes,
    now: datetime,
) -> UploadProgress:
    """Append ``chunk`` at ``offset``; the chunk that completes the blob verifies and keeps it.

    An empty chunk at ``offset == size`` finishes an upload whose bytes all arrived before
    (a crash while finishing): the stored bytes are verified again, nothing is re-sent.
    """
    check_sha256(sha256)
    size = expected_blob_size(session, principal, sha256)
    org_id = _org(principal)
    if _complete(session, store, org_id, sha256):
        return UploadProgress(sha256, size, size, complete=True)
    if offset + len(chunk) > size:
        raise BadRequest(f"the chunk runs past the blob's size ({size} bytes)")
    upload_id = _upload_id(org_id, sha256)
    store.begin_upload(upload_id, max_bytes=size)
    reached = store.append_upload(upload_id, offset, chunk)
    if reached < size:
        return UploadProgress(sha256, size, reached, complete=False)
    try:
        info = store.install_upload(upload_id, sha256)
    except UploadNotFound:
        # Another request of this org finished it meanwhile and discarded the upload.
        if _complete(session, store, org_id, sha256):
            return UploadProgress(sha256, size, size, complete=True)
        raise
    record_blob(session, info.sha256, info.size, now, org_id=org_id)
    # The holder row must be durable before the bytes' only other proof goes away.
    session.commit()
    # The blob is recorded: a discard that fails (or lost a race) only leaves an upload that
    # `admin gc` aborts after the upload grace period, so it must not fail the request.
    with contextlib.suppress(UploadNotFound, StorageUnavailable):
        store.abort_upload(upload_id)
    return UploadProgress(sha256, size, size, complete=True)
