"""Tamper checks: recompute a log from its entries and compare with stored nodes and checkpoints."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from licensing.errors import TlogInconsistentError, TlogProofInvalidError
from licensing.tlog.checkpoint import Checkpoint
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import NodeReader, leaf_hash, verify_consistency

__all__ = [
    "AuditProblem",
    "ProblemKind",
    "check_consistency",
    "check_log",
    "recompute_and_compare",
    "recompute_and_compare_indexed",
]

#: Leaves hashed per appender call; bounds memory while keeping the per-call overhead negligible.
_CHUNK = 4096


class ProblemKind(StrEnum):
    ENTRY_EDITED = "entry_edited"
    ENTRY_DELETED = "entry_deleted"
    ENTRY_INSERTED = "entry_inserted"
    ENTRIES_REORDERED = "entries_reordered"
    ENTRIES_MISSING = "entries_missing"
    NODE_MISSING = "node_missing"
    NODE_MISMATCH = "node_mismatch"
    ROOT_MISMATCH = "root_mismatch"


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first inconsistency found; ``index`` is a leaf index, or a node index at ``level``."""

    kind: ProblemKind
    index: int
    level: int
    message: str

    def to_error(self) -> TlogInconsistentError:
        return TlogInconsistentError(f"{self.kind.value}: {self.message}")


def _stored(reader: NodeReader, level: int, index: int) -> bytes | None:
    try:
        return reader.get(level, index)
    except KeyError:
        return None


def _same(a: bytes | None, b: bytes | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a, b)


def _classify_leaf(
    reader: NodeReader, index: int, got: bytes, following: bytes | None, scan_to: int
) -> AuditProblem:
    """Name what happened at the first leaf whose entry no longer matches its stored hash."""
    here = _stored(reader, 0, index)
    nxt = _stored(reader, 0, index + 1)
    prev = _stored(reader, 0, index - 1) if index else None

    def problem(kind: ProblemKind, message: str) -> AuditProblem:
        return AuditProblem(kind, index, 0, message)

    if _same(got, nxt) and _same(following, here):
        return problem(ProblemKind.ENTRIES_REORDERED, f"entries {index} and {index + 1} swapped")
    if _same(got, nxt):
        return problem(ProblemKind.ENTRY_DELETED, f"entry {index} was deleted")
    if _same(following, here):
        return problem(ProblemKind.ENTRY_INSERTED, f"an entry was inserted at {index}")
    if _same(got, prev):
        return problem(ProblemKind.ENTRY_INSERTED, f"entry {index - 1} is duplicated at {index}")
    for j in range(scan_to):
        if j != index and _same(got, _stored(reader, 0, j)):
            return problem(ProblemKind.ENTRIES_REORDERED, f"entry {j} appears at index {index}")
    return problem(ProblemKind.ENTRY_EDITED, f"entry {index} does not match its stored hash")


def recompute_and_compare_indexed(
    entries: Iterable[tuple[int, bytes]], stored_nodes: NodeReader, checkpoint: Checkpoint
) -> AuditProblem | None:
    """Recompute the tree from ``(index, entry)`` rows in index order and compare.

    Every perfect-subtree node the entries imply must be stored with the same hash, the entries
    must be numbered 0, 1, 2, ... without gaps, and the root at ``checkpoint.size`` must equal the
    checkpoint's. Entries past the checkpoint (not yet signed) are checked against stored nodes
    only. Returns ``None`` when all is consistent. The caller verifies the checkpoint signature.
    """
    rows: Iterator[tuple[int, bytes]] = iter(entries)
    state = CompactRange.empty()
    # Checkpoint already guarantees a size-0 checkpoint carries the empty-tree root.
    checkpoint_root: bytes | None = checkpoint.root_hash if checkpoint.size == 0 else None
    expected = 0
    done = False
    while not done:
        chunk: list[bytes] = []
        for row_index, entry in rows:
            if row_index != expected:
                kind = (
                    ProblemKind.ENTRY_DELETED
                    if row_index > expected
                    else ProblemKind.ENTRY_INSERTED
                )
                return AuditProblem(kind, expected, 0, f"entry numbered {row_index} at {expected}")
            chunk.append(leaf_hash(entry))
            expected += 1
            # Stop the chunk exactly at the checkpoint so its root can be compared.
            if len(chunk) == _CHUNK or expected == checkpoint.size:
                break
        else:
            done = True
        if not chunk:
            break
        result = append_batch(state, chunk)
        for level, index, value in result.nodes:
            stored = _stored(stored_nodes, level, index)
            if stored is None:
                return AuditProblem(
                    ProblemKind.NODE_MISSING, index, level, f"node ({level}, {index}) is missing"
                )
            if _same(stored, value):
                continue
            if level > 0:
                return AuditProblem(
                    ProblemKind.NODE_MISMATCH,
                    index,
                    level,
                    f"node ({level}, {index}) does not match the entries below it",
                )
            following = next(rows, None)
            nxt = None
            if index + 1 < result.state.size:
                nxt = chunk[index + 1 - state.size]
            elif following is not None:
                nxt = leaf_hash(following[1])
            return _classify_leaf(
                stored_nodes, index, value, nxt, max(checkpoint.size, result.state.size)
            )
        state = result.state
        if state.size == checkpoint.size:
            checkpoint_root = result.root
    if state.size < checkpoint.size:
        return AuditProblem(
            ProblemKind.ENTRIES_MISSING,
            state.size,
            0,
            f"{checkpoint.size - state.size} entries before the checkpoint size are missing",
        )
    if checkpoint_root is not None and not _same(checkpoint_root, checkpoint.root_hash):
        return AuditProblem(
            ProblemKind.ROOT_MISMATCH,
            checkpoint.size,
            0,
            "entries and nodes agree but their root is not the signed checkpoint's",
        )
    return None


def recompute_and_compare(
    entries: Iterable[bytes], stored_nodes: NodeReader, checkpoint: Checkpoint
) -> AuditProblem | None:
    """:func:`recompute_and_compare_indexed` for entries already in index order."""
    return recompute_and_compare_indexed(enumerate(entries), stored_nodes, checkpoint)


def check_log(entries: Iterable[bytes], stored_nodes: NodeReader, checkpoint: Checkpoint) -> None:
    """Raise :class:`~licensing.errors.TlogInconsistentError` describing the first problem."""
    problem = recompute_and_compare(entries, stored_nodes, checkpoint)
    if problem is not None:
        raise problem.to_error()


def check_consistency(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise :class:`~licensing.errors.TlogInconsistentError` unless ``new`` extends ``old``."""
    if old.origin != new.origin:
        raise TlogInconsistentError("checkpoints come from different logs")
    if new.size < old.size:
        raise TlogInconsistentError(f"size went back from {old.size} to {new.size}")
    try:
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except TlogProofInvalidError as exc:
        raise TlogInconsistentError(
            f"checkpoints {old.size} and {new.size} are not proven consistent ({exc.message})"
        ) from None
