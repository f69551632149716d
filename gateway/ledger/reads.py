"""Read side of the log for HTTP and CLI: checkpoints, visible entries, proofs and receipts.

Visibility: proofs, checkpoints and leaf hashes are public (every inclusion proof already
reveals sibling leaf hashes). An entry's content is shown to admins, to the account that
acted, and to publishers for entries of their org; to anyone else it is a leaf hash only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import LogCheckpoint, LogEntry, Role
from gateway.ledger.errors import (
    LogEntryForbidden,
    LogEntryNotFound,
    LogIndexOutOfRange,
    LogNotReady,
    LogRangeInvalid,
    LogSizeOutOfRange,
)
from gateway.ledger.integrate import latest_checkpoint
from gateway.ledger.nodes import SqlNodeReader
from gateway.ledger.witnessing import cosignature_lines
from licensing.tlog.merkle import (
    consistency_proof,
    consistency_proof_node_ids,
    inclusion_proof,
    inclusion_proof_node_ids,
    leaf_hash,
    root_node_ids,
    tree_root,
)
from licensing.tlog.receipt import format_receipt

__all__ = [
    "MAX_PAGE",
    "EntryView",
    "InclusionProof",
    "can_see",
    "consistency",
    "cosigned_checkpoint",
    "current_checkpoint",
    "entry_row",
    "inclusion",
    "list_entries",
    "receipt_for",
]

#: Largest page of entries one request returns.
MAX_PAGE = 1000

_entries = LogEntry.__table__  # type: ignore[attr-defined]
_checkpoints = LogCheckpoint.__table__  # type: ignore[attr-defined]


def can_see(principal: Principal | None, row: LogEntry) -> bool:
    """Whether ``principal`` may read the content of entry ``row``."""
    if principal is None:
        return False
    if principal.role is Role.admin:
        return True
    if row.actor_user_id is not None and row.actor_user_id == principal.user_id:
        return True
    return (
        principal.role is Role.publisher
        and principal.org_id is not None
        and row.org_id == principal.org_id
    )


def current_checkpoint(session: Session) -> LogCheckpoint:
    row = latest_checkpoint(session)
    if row is None:
        raise LogNotReady("no checkpoint has been signed yet; try again shortly")
    return row


def cosigned_checkpoint(session: Session) -> str:
    """The latest signed checkpoint with its witnesses' cosignature lines appended."""
    row = current_checkpoint(session)
    return row.note + cosignature_lines(session, row.size)


@dataclass(frozen=True, slots=True)
class EntryView:
    index: int
    leaf_hash: bytes
    entry: str | None  # None when the caller may not see it


def list_entries(
    session: Session, principal: Principal | None, start: int, end: int | None
) -> tuple[int, list[EntryView]]:
    """Entries ``[start, end)`` of the latest checkpoint (end defaults to a full page)."""
    size = current_checkpoint(session).size
    if end is None:
        end = min(start + MAX_PAGE, size)
    if start > end:
        raise LogRangeInvalid(f"start {start} is after end {end}")
    if end - start > MAX_PAGE:
        raise LogRangeInvalid(f"at most {MAX_PAGE} entries per request")
    if end > size:
        raise LogIndexOutOfRange(f"end {end} is past the signed tree size {size}")
    rows = session.execute(
        select(LogEntry)
        .where(_entries.c.idx >= start, _entries.c.idx < end)
        .order_by(_entries.c.idx)
    ).scalars()
    views = [
        EntryView(
            index=row.idx,
            leaf_hash=leaf_hash(row.entry.encode("utf-8")),
            entry=row.entry if can_see(principal, row) else None,
        )
        for row in rows
    ]
    return size, views


def entry_row(session: Session, index: int) -> LogEntry:
    row = session.get(LogEntry, index)
    if row is None:
        raise LogEntryNotFound(f"no log entry {index}")
    return row


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    size: int
    leaf_hash: bytes
    proof: list[bytes]
    root_hash: bytes
    checkpoint: str | None  # the signed note, when ``size`` is a signed checkpoint's size


_LATEST = select(_checkpoints.c.size, _checkpoints.c.note).order_by(_checkpoints.c.size.desc())


def _checkpoint_for(session: Session, size: int | None) -> tuple[int, str | None]:
    """``size`` (default: the latest signed) checked against the latest, and its note if signed."""
    row = session.execute(_LATEST.limit(1)).first()
    if row is None:
        raise LogNotReady("no checkpoint has been signed yet; try again shortly")
    latest, note = int(row[0]), str(row[1])
    if size is None or size == latest:
        return latest, note
    if size > latest:
        raise LogSizeOutOfRange(f"size {size} is past the latest checkpoint size {latest}")
    other = session.execute(
        select(_checkpoints.c.note).where(_checkpoints.c.size == size)
    ).scalar_one_or_none()
    return size, None if other is None else str(other)


def inclusion(session: Session, index: int, size: int | None) -> InclusionProof:
    """Audit path of entry ``index`` in the tree of ``size`` leaves (default: latest)."""
    size, note = _checkpoint_for(session, size)
    if index >= size:
        raise LogIndexOutOfRange(f"index {index} is outside a tree of size {size}")
    reader = SqlNodeReader(session)
    reader.prefetch([(0, index), *inclusion_proof_node_ids(index, size), *root_node_ids(size)])
    return InclusionProof(
        index=index,
        size=size,
        leaf_hash=reader.get(0, index),
        proof=inclusion_proof(index, size, reader),
        root_hash=tree_root(size, reader),
        checkpoint=note,
    )


def consistency(session: Session, old_size: int, new_size: int | None) -> tuple[int, list[bytes]]:
    new_size, _ = _checkpoint_for(session, new_size)
    if old_size > new_size:
        raise LogRangeInvalid(f"from {old_size} is after to {new_size}")
    reader = SqlNodeReader(session)
    reader.prefetch(consistency_proof_node_ids(old_size, new_size))
    return new_size, consistency_proof(old_size, new_size, reader)


def receipt_for(session: Session, principal: Principal, index: int) -> tuple[LogEntry, str]:
    """The entry and its c2sp.org/tlog-proof@v1 receipt against the latest checkpoint."""
    row = entry_row(session, index)
    if not can_see(principal, row):
        raise LogEntryForbidden(f"log entry {index} is not one you may read")
    checkpoint = current_checkpoint(session)
    if index >= checkpoint.size:
        raise LogIndexOutOfRange(f"entry {index} is not integrated yet; try again shortly")
    reader = SqlNodeReader(session)
    reader.prefetch(inclusion_proof_node_ids(index, checkpoint.size))
    proof = inclusion_proof(index, checkpoint.size, reader)
    return row, format_receipt(index, proof, checkpoint.note)
