"""Garbage collection: abandoned pending releases, unreferenced blobs, stale upload sessions.

A publish that is never finished leaves a pending release (invisible to everyone but its org)
and possibly blobs and half-sent resumable uploads behind; nothing else ever removes them.
An operator runs ``tiergate admin gc`` (a dry run unless ``--apply``) to reclaim them.

Safety, in order of the steps:

1. A pending release is discarded only if it is still pending in the deleting transaction
   (a publish that wins the race keeps it) and nothing but its own rows (tiers, files, its
   signed policy version) refers to it; the discard is logged as ``release.discarded``.
2. A blob is deleted only if it is older than the grace period and no release file of any
   release refers to it, checked again in the same statement that deletes its row. Its
   holder rows (which orgs sent its bytes) go in that same transaction, so a possession
   record never outlives the bytes it is about. The stored bytes go after that commit. An
   org whose upload of the same digest completes between those two steps holds a blob
   whose bytes then vanish; publishing therefore checks the store itself
   (``releases.missing_blobs`` with ``stored=``), so the worst case is one more upload,
   never a published release with a missing file.
3. An upload session is aborted when it has received nothing for the upload grace period;
   a client that comes back simply starts that blob again (uploads resume by content).
4. Leftovers of a finish or abort that a crash cut short (``uploads/.gone-*``, staging
   directories and temp files, S3 parts without a live upload) go after the same grace period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, exists, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col

from gateway.db.engine import session_scope
from gateway.db.models import Blob, PolicyVersion, Release, ReleaseFile, ReleaseStatus, ReleaseTier
from gateway.ledger.events import Actor, record_event
from gateway.storage import BlobInfo, BlobStore, UploadNotFound

__all__ = ["GcCutoffs", "GcReport", "collect_garbage"]

# Rows that belong to a release and go with it; any other table pointing at a release means
# someone used it (a grant, a link, a generation) and the release is left alone.
_OWNED = {ReleaseTier.__tablename__, ReleaseFile.__tablename__, PolicyVersion.__tablename__}
# Held only inside the discarding transaction, never committed.
_DISCARDING = "discarding"
_UNREFERENCED = "NOT EXISTS (SELECT 1 FROM release_files WHERE release_files.sha256 = :sha)"
# Holders go with their blob, in the same transaction: possession recorded for bytes that are
# deleted must not outlive them, or a later upload of the same digest by anyone would make
# the old holder's releases publishable without that org ever sending the bytes again.
_DELETE_UNREFERENCED_HOLDERS = text(
    f"DELETE FROM blob_holders WHERE sha256 = :sha AND {_UNREFERENCED}"  # noqa: S608 (constant)
)
_DELETE_UNREFERENCED_BLOB = text(
    f"DELETE FROM blobs WHERE sha256 = :sha AND {_UNREFERENCED}"  # noqa: S608 (constant)
)


@dataclass(frozen=True)
class GcCutoffs:
    """Things last touched before these moments are garbage (all UTC)."""

    pending_before: datetime
    blobs_before: datetime
    uploads_before: datetime


@dataclass
class GcReport:
    applied: bool
    releases: list[str] = field(default_factory=list)
    blobs: list[BlobInfo] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for b in self.blobs)


def _referencing_tables() -> list[tuple[str, str]]:
    """(table, column) pairs with a foreign key to releases.id, other than owned rows."""
    found = []
    for table in SQLModel.metadata.tables.values():
        if table.name in _OWNED:
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == Release.__tablename__:
                found.append((table.name, fk.parent.name))
    return sorted(found)


def _in_use(session: Session, release_id: int) -> str | None:
    for table, column in _referencing_tables():
        query = text(f"SELECT 1 FROM {table} WHERE {column} = :id LIMIT 1")  # noqa: S608 (names from our metadata)
        if session.execute(query, {"id": release_id}).first() is not None:
            return table
    return None


def _discard_release(session: Session, release: Release, now: datetime) -> str | None:
    """Delete one abandoned pending release; the reason it was kept, or None."""
    assert release.id is not None
    # Claim it first: only a row still pending is ours, and from here a concurrent publish
    # sees it as not pending (or waits on the row lock) instead of racing the delete.
    claimed = session.execute(
        update(Release)
        .where(col(Release.id) == release.id, col(Release.status) == ReleaseStatus.pending.value)
        .values(status=_DISCARDING)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return "no longer pending"
    user = _in_use(session, release.id)
    if user is not None:
        session.rollback()  # un-claim
        return f"referenced from {user}"
    for model in (ReleaseFile, ReleaseTier, PolicyVersion):
        session.execute(delete(model).where(col(model.release_id) == release.id))
    session.execute(delete(Release).where(col(Release.id) == release.id))
    record_event(
        session,
        action="release.discarded",
        actor=Actor(kind="operator"),
        resource=f"release:{release.repo_id}@{release.version}",
        now=now,
        org_id=release.org_id,
        fields={
            "statement_digest": release.statement_digest,
            "reason": "abandoned while pending",
        },
    )
    return None


def _abandoned_releases(engine: Engine, before: datetime) -> list[Release]:
    with session_scope(engine) as session:
        query = select(Release).where(
            col(Release.status) == ReleaseStatus.pending.value, col(Release.created_at) < before
        )
        return list(session.scalars(query.order_by(col(Release.id))))


def _unreferenced_blobs(engine: Engine, before: datetime) -> list[BlobInfo]:
    referenced = exists().where(col(ReleaseFile.sha256) == col(Blob.sha256))
    query = (
        select(col(Blob.sha256), col(Blob.size))
        .where(col(Blob.created_at) < before, ~referenced)
        .order_by(col(Blob.sha256))
    )
    with session_scope(engine) as session:
        return [BlobInfo(sha256=sha, size=int(size)) for sha, size in session.execute(query)]


def collect_garbage(
    engine: Engine,
    store: BlobStore,
    cutoffs: GcCutoffs,
    *,
    now: datetime,
    apply: bool,
    on_step: Callable[[str], None] | None = None,
) -> GcReport:
    """Find (and with ``apply``, remove) garbage; each removal is its own transaction."""
    report = GcReport(applied=apply)
    say = on_step or (lambda _message: None)

    doomed: list[int] = []
    for release in _abandoned_releases(engine, cutoffs.pending_before):
        assert release.id is not None
        ref = f"{release.repo_id}@{release.version}"
        with session_scope(engine) as session:
            if apply:
                kept = _discard_release(session, release, now)
            else:
                user = _in_use(session, release.id)
                kept = f"referenced from {user}" if user else None
        if kept is not None:
            report.skipped.append(f"release {ref}: {kept}")
            continue
        report.releases.append(ref)
        doomed.append(release.id)
        if apply:
            say(f"discarded pending release {ref}")

    # After the releases: their blobs have just become unreferenced. A dry run cannot see
    # that, so it adds the blobs that only the releases it would discard refer to.
    blobs = _unreferenced_blobs(engine, cutoffs.blobs_before)
    if not apply and doomed:
        blobs = sorted(
            [*blobs, *_blobs_only_of(engine, doomed, cutoffs.blobs_before)],
            key=lambda b: b.sha256,
        )
    for blob in blobs:
        if not apply:
            report.blobs.append(blob)
            continue
        with session_scope(engine) as session:
            session.execute(_DELETE_UNREFERENCED_HOLDERS, {"sha": blob.sha256})
            deleted = session.execute(_DELETE_UNREFERENCED_BLOB, {"sha": blob.sha256}).rowcount  # type: ignore[attr-defined]
            if deleted != 1:
                session.rollback()  # referenced again meanwhile: its holders stay too
        if deleted != 1:
            report.skipped.append(f"blob {blob.sha256}: referenced again")
            continue
        store.delete(blob.sha256)
        report.blobs.append(blob)
        say(f"deleted blob {blob.sha256} ({blob.size:,} bytes)")

    for upload in store.iter_uploads():
        if upload.last_activity >= cutoffs.uploads_before:
            continue
        if apply:
            try:
                store.abort_upload(upload.upload_id)
            except UploadNotFound:
                continue  # finished or aborted meanwhile
            say(f"aborted upload {upload.upload_id}")
        report.uploads.append(upload.upload_id)

    # Debris no upload id reaches (a finish or abort cut short by a crash): same grace.
    for name in store.remove_leftovers(cutoffs.uploads_before, apply=apply):
        report.leftovers.append(name)
        if apply:
            say(f"removed leftover {name}")
    return report


def _blobs_only_of(engine: Engine, release_ids: list[int], before: datetime) -> list[BlobInfo]:
    """Blobs older than ``before`` that these releases, and no other, refer to."""
    ours = exists().where(
        col(ReleaseFile.sha256) == col(Blob.sha256), col(ReleaseFile.release_id).in_(release_ids)
    )
    others = exists().where(
        col(ReleaseFile.sha256) == col(Blob.sha256),
        col(ReleaseFile.release_id).not_in(release_ids),
    )
    query = select(col(Blob.sha256), col(Blob.size)).where(
        col(Blob.created_at) < before, ours, ~others
    )
    with session_scope(engine) as session:
        return [BlobInfo(sha256=sha, size=int(size)) for sha, size in session.execute(query)]
