"""Incremental appender: integrate B leaves in O(B + log n) hashing, emitting nodes to persist."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from licensing.errors import TlogInconsistentError, TlogRangeError
from licensing.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    NodeId,
    NodeReader,
    node_hash,
    root_node_ids,
)

__all__ = [
    "AppendResult",
    "CompactRange",
    "StoredNode",
    "append_batch",
    "load_compact_range",
]

#: ``(level, index, hash)`` of a perfect subtree; what the gateway inserts into its node table.
StoredNode = tuple[int, int, bytes]


@dataclass(frozen=True, slots=True)
class CompactRange:
    """State of a log of ``size`` leaves: the hashes of its right-edge perfect subtrees.

    ``right_edge`` lists one hash per set bit of ``size``, largest subtree first; these are
    exactly the nodes named by :func:`licensing.tlog.merkle.root_node_ids`.
    """

    size: int
    right_edge: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise TlogRangeError(f"tree size {self.size} out of range")
        if len(self.right_edge) != self.size.bit_count():
            raise TlogInconsistentError(
                f"a tree of size {self.size} has {self.size.bit_count()} right-edge nodes, "
                f"got {len(self.right_edge)}"
            )
        if any(len(h) != HASH_SIZE for h in self.right_edge):
            raise TlogInconsistentError(f"right-edge hashes must be {HASH_SIZE} bytes")

    @classmethod
    def empty(cls) -> CompactRange:
        return cls(0, ())

    def node_ids(self) -> list[NodeId]:
        """Node ids of :attr:`right_edge`, in the same order."""
        return root_node_ids(self.size)

    def root(self) -> bytes:
        """Tree root: the right edge folded right to left (O(log n) hashes)."""
        if not self.right_edge:
            return EMPTY_ROOT
        acc = self.right_edge[-1]
        for h in reversed(self.right_edge[:-1]):
            acc = node_hash(h, acc)
        return acc


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Outcome of :func:`append_batch`.

    ``nodes`` are every perfect subtree completed by the batch, leaves (level 0) included, in
    creation order; each is final and never changes, so the gateway stores them insert-only in
    the same transaction that records the new size.
    """

    nodes: list[StoredNode]
    root: bytes
    state: CompactRange


def load_compact_range(size: int, reader: NodeReader) -> CompactRange:
    """Rebuild the appender state of a ``size``-leaf log from its stored right-edge nodes."""
    hashes = []
    for level, index in root_node_ids(size):
        try:
            hashes.append(reader.get(level, index))
        except KeyError:
            raise TlogInconsistentError(
                f"right-edge node ({level}, {index}) of size {size} is not stored"
            ) from None
    return CompactRange(size, tuple(hashes))


def append_batch(state: CompactRange, leaf_hashes: Sequence[bytes]) -> AppendResult:
    """Append ``leaf_hashes`` after ``state``; return the nodes to persist, new root and state.

    Costs one node hash per completed subtree (fewer than one per leaf on average) plus
    O(log n) to fold the root: O(B + log n) for a batch of B leaves.
    """
    size = state.size
    if size + len(leaf_hashes) > MAX_TREE_SIZE:
        raise TlogRangeError("batch would overflow the maximum tree size")
    edge = list(state.right_edge)
    nodes: list[StoredNode] = []
    emit = nodes.append
    for h in leaf_hashes:
        if len(h) != HASH_SIZE:
            raise TlogRangeError(f"leaf hashes must be {HASH_SIZE} bytes")
        emit((0, size, h))
        # Each trailing one bit of the old size is a finished left sibling waiting on the edge.
        index, level = size, 0
        while index & 1:
            h = node_hash(edge.pop(), h)
            index >>= 1
            level += 1
            emit((level, index, h))
        edge.append(h)
        size += 1
    new_state = CompactRange(size, tuple(edge))
    return AppendResult(nodes=nodes, root=new_state.root(), state=new_state)
