"""Start-up self-check: the stored tree must still be what the entries and the signature say.

Recomputes the Merkle tree from `log_entries` and compares every node with `log_nodes`, the
root with the latest signed checkpoint (whose signature is checked with the log key), and the
`log_state` row with both. O(n) hashing, one streaming SELECT for the entries and one range
query per level per block of nodes. For very large logs ``max_entries`` bounds the work to
the newest entries (see docs/decisions-ledger.md for what that mode still proves).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.db.models import LogEntry
from gateway.ledger.anchor import check_against_anchor
from gateway.ledger.integrate import LogKey, _open_previous, latest_checkpoint, read_state
from gateway.ledger.nodes import BlockNodeReader, SqlNodeReader
from licensing.errors import TransparencyLogError
from licensing.tlog.audit import recompute_and_compare_indexed
from licensing.tlog.checkpoint import Checkpoint
from licensing.tlog.compact import CompactRange, load_compact_range
from licensing.tlog.merkle import leaf_hash, tree_root

__all__ = ["check_stored_log", "snapshot_session"]

_entries = LogEntry.__table__  # type: ignore[attr-defined]
_STREAM_ROWS = 5_000


def _rows(session: Session, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    result = session.execute(
        select(_entries.c.idx, _entries.c.entry)
        .where(_entries.c.idx >= start, _entries.c.idx < end)
        .order_by(_entries.c.idx)
        .execution_options(yield_per=_STREAM_ROWS)
    )
    for idx, entry in result:
        yield int(idx), str(entry).encode("utf-8")


def _check_suffix(session: Session, start: int, end: int) -> str | None:
    """Bounded mode: each recent entry hashes to its stored leaf node, densely numbered."""
    reader = BlockNodeReader(session)
    expected = start
    for idx, entry in _rows(session, start, end):
        if idx != expected:
            return f"entry_deleted: entry {expected} is missing"
        try:
            stored = reader.get(0, idx)
        except KeyError:
            return f"node_missing: leaf node {idx} is missing"
        if not hmac.compare_digest(stored, leaf_hash(entry)):
            return f"entry_edited: entry {idx} does not match its stored hash"
        expected += 1
    if expected != end:
        return f"entries_missing: entries {expected}..{end - 1} are missing"
    return None


def check_stored_log(
    session: Session,
    key: LogKey,
    *,
    max_entries: int | None = None,
    anchor: Checkpoint | None = None,
) -> str | None:
    """Return why the stored log is inconsistent, or None when it checks out.

    ``max_entries`` (None: all) limits the entry-by-entry recomputation to the newest entries.
    ``anchor`` is the latest checkpoint signed as remembered outside the database: the stored
    tree must equal or extend it (a database restored from an older backup does not).
    The session must read one snapshot (see :func:`snapshot_session`), or a concurrent append
    could look like an inserted row.
    """
    try:
        state = read_state(session)
        row = latest_checkpoint(session)
        if row is None:
            if anchor is not None:
                return f"rollback: no checkpoint stored but size {anchor.size} was signed"
            if state.tree_size:
                return f"tree size {state.tree_size} but no signed checkpoint"
            return None
        checkpoint = _open_previous(row, key)
        if checkpoint.size != state.tree_size or not hmac.compare_digest(
            checkpoint.root_hash, state.root_hash
        ):
            return (
                f"root_mismatch: latest checkpoint (size {checkpoint.size}) is not the "
                f"integrated tree in log_state (size {state.tree_size})"
            )
        edge = CompactRange(state.tree_size, state.right_edge)
        if not hmac.compare_digest(edge.root(), state.root_hash):
            return "root_mismatch: log_state root does not match its right edge"
        reader = SqlNodeReader(session)
        reader.prefetch(edge.node_ids())
        if load_compact_range(state.tree_size, reader).right_edge != edge.right_edge:
            return "node_mismatch: log_state right edge differs from the stored nodes"
        if not hmac.compare_digest(tree_root(state.tree_size, reader), checkpoint.root_hash):
            return "root_mismatch: stored nodes do not fold to the signed root"
        if anchor is not None:
            check_against_anchor(anchor, state.tree_size, state.root_hash, reader)
        beyond = _count(session, state.next_index, None)
        if beyond:
            return f"entry_inserted: {beyond} entries numbered at or past {state.next_index}"
        unintegrated = _count(session, state.tree_size, state.next_index)
        if unintegrated != state.next_index - state.tree_size:
            return "entries_missing: appended entries awaiting integration were deleted"
        if max_entries is not None and state.tree_size > max_entries:
            return _check_suffix(session, state.tree_size - max_entries, state.tree_size)
        problem = recompute_and_compare_indexed(
            _rows(session, 0, state.tree_size), BlockNodeReader(session), checkpoint
        )
        return None if problem is None else f"{problem.kind.value}: {problem.message}"
    except TransparencyLogError as exc:
        return f"{exc.code}: {exc}"


def _count(session: Session, start: int, end: int | None) -> int:
    query = select(func.count()).select_from(_entries).where(_entries.c.idx >= start)
    if end is not None:
        query = query.where(_entries.c.idx < end)
    return int(session.execute(query).scalar_one())


@contextmanager
def snapshot_session(engine: Engine) -> Iterator[Session]:
    """A read-only session over one consistent snapshot of the log tables; always rolled back.

    PostgreSQL: a REPEATABLE READ transaction (no locks, appends continue). SQLite: Python's
    driver runs plain SELECTs outside any transaction, so the write lock is taken instead;
    SQLite deployments are single-host, and the check runs before the app serves requests.
    """
    if engine.dialect.name == "postgresql":
        connection = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    else:
        connection = engine.connect()
    try:
        with Session(bind=connection) as session:
            if engine.dialect.name != "postgresql":
                session.execute(text("UPDATE log_state SET tree_size = tree_size WHERE id = 1"))
            try:
                yield session
            finally:
                session.rollback()
    finally:
        connection.close()
