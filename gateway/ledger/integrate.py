"""Batch integration: appended entries become Merkle nodes and a new signed checkpoint.

One integration is one transaction that first takes the `log_state` row lock, the same lock
`record_event` takes, so it is serialized with every append and with the integrators of other
gateway processes on the same database. Everything it reads (state row, entries, nodes, the
previous checkpoint) is cross-checked before anything is signed: the previous checkpoint's
signature, the state row's right edge against the stored nodes, the checkpoint anchor kept
outside the database (a restored backup is a rollback), a window of already integrated entries
re-hashed from their rows, and a consistency proof built from the stored nodes. A mismatch
raises :class:`~licensing.errors.TlogInconsistentError` and nothing is signed, so the gateway
can never sign two inconsistent checkpoints.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select, text, update
from sqlmodel import Session

from gateway.db.models import LogCheckpoint, LogNode, LogState
from gateway.ledger.anchor import check_against_anchor
from gateway.ledger.nodes import SqlNodeReader
from gateway.ledger.recheck import DEFAULT_BLOCK_BITS, entry_leaf_hashes, recheck_window
from licensing.errors import TlogInconsistentError
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from licensing.tlog.compact import CompactRange, StoredNode, append_batch, load_compact_range
from licensing.tlog.merkle import consistency_proof, consistency_proof_node_ids
from licensing.tlog.note import Signer, Verifier, parse_note

__all__ = [
    "DEFAULT_BATCH",
    "LOG_NAME",
    "Integration",
    "LogKey",
    "StoredState",
    "integrate",
    "latest_checkpoint",
    "origin_from_base_url",
    "pending_entries",
    "read_state",
    "stored_origin",
]

LOG_NAME = "tiergate-log"
#: Entries per integration transaction: bounds how long appenders wait on the row lock.
DEFAULT_BATCH = 10_000

# A no-op UPDATE is the portable way to take the row lock first: PostgreSQL locks the row,
# SQLite takes its write lock before the reads (a read-then-write upgrade could deadlock).
_LOCK_STATE = text(
    "UPDATE log_state SET tree_size = tree_size WHERE id = 1 "
    "RETURNING next_index, tree_size, root_hash, right_edge"
)
_nodes = LogNode.__table__  # type: ignore[attr-defined]
_checkpoints = LogCheckpoint.__table__  # type: ignore[attr-defined]
_state = LogState.__table__  # type: ignore[attr-defined]


def origin_from_base_url(base_url: str) -> str:
    """The log's origin line: ``<host[:port]>[/path]/tiergate-log`` of the public base URL."""
    parts = urlsplit(base_url)
    host = parts.netloc.rsplit("@", 1)[-1] or "localhost"
    return f"{host}{parts.path.rstrip('/')}/{LOG_NAME}"


@dataclass(frozen=True, slots=True)
class LogKey:
    """The log's note signer, named after the origin as C2SP checkpoints require."""

    origin: str
    signer: Signer

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey, origin: str) -> LogKey:
        return cls(origin=origin, signer=Signer(origin, key.private_bytes_raw()))

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()

    def __repr__(self) -> str:
        return f"LogKey(origin={self.origin!r})"


@dataclass(frozen=True, slots=True)
class StoredState:
    next_index: int
    tree_size: int
    root_hash: bytes
    right_edge: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Integration:
    """What one call integrated; ``note`` is the new signed checkpoint, or None if idle."""

    old_size: int
    size: int
    root_hash: bytes
    note: str | None


def _parse_state(row: tuple[object, ...]) -> StoredState:
    next_index, tree_size, root_hex, edge_json = row
    try:
        edge = tuple(bytes.fromhex(h) for h in json.loads(str(edge_json)))
        root = bytes.fromhex(str(root_hex))
    except (ValueError, TypeError) as exc:
        raise TlogInconsistentError(f"log_state row is malformed ({exc})") from None
    return StoredState(int(str(next_index)), int(str(tree_size)), root, edge)


def read_state(session: Session) -> StoredState:
    row = session.execute(
        select(_state.c.next_index, _state.c.tree_size, _state.c.root_hash, _state.c.right_edge)
    ).one()
    return _parse_state(tuple(row))


def pending_entries(session: Session) -> int:
    """Appended but not yet integrated entries, read without any lock (a cheap idle check)."""
    row = session.execute(select(_state.c.next_index, _state.c.tree_size)).one()
    return int(row[0]) - int(row[1])


def latest_checkpoint(session: Session) -> LogCheckpoint | None:
    return session.execute(
        select(LogCheckpoint).order_by(LogCheckpoint.size.desc()).limit(1)  # type: ignore[attr-defined]
    ).scalar_one_or_none()


def stored_origin(session: Session) -> str | None:
    """Origin of the stored log (from its latest checkpoint): a log never changes its name."""
    row = latest_checkpoint(session)
    if row is None:
        return None
    try:
        return parse_checkpoint(parse_note(row.note).text).origin
    except Exception:  # an unreadable checkpoint is reported by the self-check, not here
        return None


def _open_previous(row: LogCheckpoint, key: LogKey) -> Checkpoint:
    checkpoint = open_checkpoint(row.note, [key.verifier], origin=key.origin)
    if checkpoint.size != row.size or checkpoint.root_hash.hex() != row.root_hash:
        raise TlogInconsistentError(f"checkpoint row {row.size} differs from its signed note")
    return checkpoint


class _OverlayReader:
    """Nodes written by this batch (not yet visible to a fresh query plan) over stored ones."""

    def __init__(self, new: list[StoredNode], stored: SqlNodeReader) -> None:
        self._new = {(level, index): value for level, index, value in new}
        self._stored = stored

    def get(self, level: int, index: int) -> bytes:
        value = self._new.get((level, index))
        return value if value is not None else self._stored.get(level, index)


def _check_state(state: StoredState, previous: Checkpoint | None, reader: SqlNodeReader) -> None:
    edge = CompactRange(state.tree_size, state.right_edge)
    if not hmac.compare_digest(edge.root(), state.root_hash):
        raise TlogInconsistentError("log_state root does not match its right edge")
    stored_edge = load_compact_range(state.tree_size, reader)
    if stored_edge.right_edge != edge.right_edge:
        raise TlogInconsistentError("log_state right edge differs from the stored nodes")
    if previous is None:
        if state.tree_size:
            raise TlogInconsistentError(f"tree size {state.tree_size} but no signed checkpoint")
        return
    if previous.size != state.tree_size or not hmac.compare_digest(
        previous.root_hash, state.root_hash
    ):
        raise TlogInconsistentError(
            f"latest checkpoint (size {previous.size}) is not the integrated tree "
            f"(size {state.tree_size})"
        )


def integrate(
    session: Session,
    key: LogKey,
    *,
    now: datetime,
    max_entries: int = DEFAULT_BATCH,
    anchor: Checkpoint | None = None,
    recheck_block: int | None = None,
    recheck_bits: int = DEFAULT_BLOCK_BITS,
) -> Integration:
    """Integrate up to ``max_entries`` appended entries and sign a checkpoint for them.

    Runs inside the caller's transaction, which must be fresh (the row lock must be the first
    thing it takes); the caller commits. Signs the empty tree when the log has no checkpoint.
    ``anchor`` is the latest checkpoint this gateway signed as remembered outside the database
    (:mod:`gateway.ledger.anchor`): the stored tree must equal or extend it. Before signing,
    the newest integrated entries and block ``recheck_block`` (round-robin, see
    :mod:`gateway.ledger.recheck`) are re-hashed from their rows against the signed root.
    """
    state = _parse_state(tuple(session.execute(_LOCK_STATE).one()))
    previous_row = latest_checkpoint(session)
    previous = _open_previous(previous_row, key) if previous_row is not None else None
    reader = SqlNodeReader(session)
    reader.prefetch(CompactRange(state.tree_size, state.right_edge).node_ids())
    _check_state(state, previous, reader)
    if anchor is not None:
        if anchor.origin != key.origin:
            raise TlogInconsistentError(f"checkpoint anchor names another log ({anchor.origin})")
        check_against_anchor(anchor, state.tree_size, state.root_hash, reader)
    end = min(state.next_index, state.tree_size + max_entries)
    if previous is not None and end == state.tree_size:
        return Integration(state.tree_size, state.tree_size, state.root_hash, None)

    recheck_window(
        session, state.tree_size, state.root_hash, block=recheck_block, block_bits=recheck_bits
    )
    leaves = entry_leaf_hashes(session, state.tree_size, end)

    result = append_batch(CompactRange(state.tree_size, state.right_edge), leaves)
    size = result.state.size
    proof: list[bytes] = []
    if previous is not None and previous.size:
        overlay = _OverlayReader(result.nodes, reader)
        # One SELECT for the old nodes of the proof; this batch's nodes come from the overlay.
        reader.prefetch(consistency_proof_node_ids(previous.size, size))
        proof = consistency_proof(previous.size, size, overlay)
    checkpoint = Checkpoint(key.origin, size, result.root)
    note = sign_checkpoint(checkpoint, key.signer, previous=previous, consistency_proof=proof)

    if result.nodes:
        session.execute(
            insert(_nodes),
            [{"level": lv, "index": ix, "hash": h.hex()} for lv, ix, h in result.nodes],
        )
    session.execute(
        insert(_checkpoints),
        [{"size": size, "root_hash": result.root.hex(), "note": note, "created_at": now}],
    )
    session.execute(
        update(_state)
        .where(_state.c.id == 1)
        .values(
            tree_size=size,
            root_hash=result.root.hex(),
            right_edge=json.dumps([h.hex() for h in result.state.right_edge]),
        )
    )
    return Integration(state.tree_size, size, result.root, note)
