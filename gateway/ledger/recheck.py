"""Run-time re-verification of integrated entries, a bounded window at a time.

The start-up self-check recomputes the whole tree, but a gateway runs for months: an entry
edited in the database while it runs must be caught before the next checkpoint is signed over
it. Re-hashing every entry per integration is O(n), so each integration (and each idle
re-check tick) verifies, against the signed root, two windows:

* the *tail*: the entries after the last complete block of ``2**block_bits`` leaves, whose
  subtrees are the low right-edge nodes of the signed tree; recomputed from the entry rows,
  they must equal those nodes, and the right edge must fold to the signed root;
* one complete *block*, chosen round-robin by the caller: its entries are re-hashed into the
  block's subtree, and the audit path from that subtree (its siblings read from the stored
  nodes) must lead to the signed root.

Both prove the entry rows are the signed ones, whatever the stored nodes say (a path that
verifies to the signed root cannot be forged). So every integrated entry is re-verified at
least once every ``ceil(size / 2**block_bits)`` windows, and the newest ones every time.
"""

from __future__ import annotations

import hmac

from sqlalchemy import select
from sqlmodel import Session

from gateway.db.models import LogEntry
from gateway.ledger.nodes import SqlNodeReader
from licensing.errors import TlogInconsistentError, TlogProofInvalidError
from licensing.tlog.compact import CompactRange, append_batch, load_compact_range
from licensing.tlog.merkle import (
    NodeId,
    inclusion_proof,
    inclusion_proof_node_ids,
    leaf_hash,
    root_node_ids,
    verify_inclusion,
)

__all__ = ["DEFAULT_BLOCK_BITS", "entry_leaf_hashes", "recheck_window"]

#: Entries per round-robin block (2**10): bounds the rows one integration re-reads.
DEFAULT_BLOCK_BITS = 10

_entries = LogEntry.__table__  # type: ignore[attr-defined]


def entry_leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    """Leaf hashes of entries ``[start, end)`` recomputed from their rows, densely numbered."""
    rows = session.execute(
        select(_entries.c.idx, _entries.c.entry)
        .where(_entries.c.idx >= start, _entries.c.idx < end)
        .order_by(_entries.c.idx)
    ).all()
    leaves: list[bytes] = []
    for expected, (idx, entry) in enumerate(rows, start=start):
        if int(idx) != expected:
            raise TlogInconsistentError(f"entry_deleted: entry {expected} is missing")
        if not isinstance(entry, str):
            raise TlogInconsistentError(f"entry_edited: entry {expected} is not text")
        leaves.append(leaf_hash(entry.encode("utf-8")))
    if start + len(leaves) != end:
        raise TlogInconsistentError(f"entries_missing: entries {start + len(leaves)}..{end - 1}")
    return leaves


class _BlockOverlay:
    """Nodes of one block recomputed from its entries, over the stored nodes outside it."""

    def __init__(self, start: int, nodes: list[tuple[int, int, bytes]], stored: SqlNodeReader):
        # append_batch numbers from 0; the block starts at an aligned leaf ``start``.
        self._mine = {(lv, (start >> lv) + ix): h for lv, ix, h in nodes}
        self._stored = stored

    def __contains__(self, node: NodeId) -> bool:
        return node in self._mine

    def get(self, level: int, index: int) -> bytes:
        value = self._mine.get((level, index))
        return value if value is not None else self._stored.get(level, index)


def _check_tail(
    session: Session, size: int, root: bytes, reader: SqlNodeReader, block_bits: int
) -> None:
    start = (size >> block_bits) << block_bits
    stored = load_compact_range(size, reader)
    if not hmac.compare_digest(stored.root(), root):
        raise TlogInconsistentError("root_mismatch: stored right edge does not fold to the root")
    if start == size:
        return
    tail = append_batch(CompactRange.empty(), entry_leaf_hashes(session, start, size))
    expected = tail.state.right_edge
    if stored.right_edge[len(stored.right_edge) - len(expected) :] != expected:
        raise TlogInconsistentError(
            f"entry_edited: an entry in {start}..{size - 1} no longer matches the signed tree"
        )


def _check_block(
    session: Session, block: int, size: int, root: bytes, reader: SqlNodeReader, block_bits: int
) -> None:
    start = block << block_bits
    leaves = entry_leaf_hashes(session, start, start + (1 << block_bits))
    overlay = _BlockOverlay(start, append_batch(CompactRange.empty(), leaves).nodes, reader)
    reader.prefetch(i for i in inclusion_proof_node_ids(start, size) if i not in overlay)
    try:
        verify_inclusion(leaves[0], start, size, inclusion_proof(start, size, overlay), root)
    except TlogProofInvalidError:
        last = start + len(leaves) - 1
        # Name the likelier culprit; either way the rows no longer reach the signed root.
        if _stored_equals(reader, block_bits, block, overlay.get(block_bits, block)):
            raise TlogInconsistentError(
                f"node_mismatch: the stored nodes above entries {start}..{last} no longer lead "
                "to the signed root"
            ) from None
        raise TlogInconsistentError(
            f"entry_edited: an entry in {start}..{last} no longer matches the signed tree"
        ) from None


def _stored_equals(reader: SqlNodeReader, level: int, index: int, value: bytes) -> bool:
    """Whether the stored node ``(level, index)`` holds ``value``."""
    try:
        return hmac.compare_digest(reader.get(level, index), value)
    except KeyError:
        return False


def recheck_window(
    session: Session,
    size: int,
    root: bytes,
    *,
    block: int | None,
    block_bits: int = DEFAULT_BLOCK_BITS,
) -> None:
    """Verify the tail and block number ``block % blocks`` of the signed tree ``(size, root)``.

    ``root`` must come from a verified checkpoint. Raises
    :class:`~licensing.errors.TlogInconsistentError` naming what no longer matches.
    """
    if size == 0:
        return
    reader = SqlNodeReader(session)
    reader.prefetch(root_node_ids(size))
    _check_tail(session, size, root, reader, block_bits)
    blocks = size >> block_bits
    if block is not None and blocks:
        _check_block(session, block % blocks, size, root, reader, block_bits)
