"""RFC 6962 / RFC 9162 Merkle tree hashing, proof generation from stored nodes, and verification."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

from licensing.errors import (
    TlogNodeMissingError,
    TlogProofInvalidError,
    TlogRangeError,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "NodeId",
    "NodeReader",
    "NodeStore",
    "consistency_proof",
    "consistency_proof_node_ids",
    "inclusion_proof",
    "inclusion_proof_node_ids",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_node_ids",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: Root of the empty tree: SHA-256 of the empty string (RFC 9162 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Sizes and indices travel as uint64 on the wire; anything larger is malformed.
MAX_TREE_SIZE = (1 << 64) - 1
#: A node id ``(level, index)``: the perfect subtree of ``2**level`` leaves from ``index << level``.
NodeId = tuple[int, int]

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """Hash of one log entry: ``SHA-256(0x00 || entry)``."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


class NodeReader(Protocol):
    """Read access to stored perfect-subtree hashes.

    ``get(level, index)`` returns the hash of the perfect subtree of ``2**level`` leaves starting at
    leaf ``index * 2**level``; level 0 holds the leaf hashes. It raises :class:`KeyError` when the
    node is not stored.
    """

    def get(self, level: int, index: int) -> bytes: ...


class NodeStore:
    """In-memory :class:`NodeReader` for tests, benchmarks and the offline auditor."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Iterable[tuple[int, int, bytes]] = ()) -> None:
        # One packed int key per node keeps a million-leaf tree at a few hundred MB.
        self._nodes: dict[int, bytes] = {}
        self.put_many(nodes)

    @staticmethod
    def _key(level: int, index: int) -> int:
        return (index << 6) | level

    def get(self, level: int, index: int) -> bytes:
        return self._nodes[self._key(level, index)]

    def put(self, level: int, index: int, value: bytes) -> None:
        if not 0 <= level < 64 or index < 0:
            raise TlogRangeError(f"invalid node id ({level}, {index})")
        self._nodes[self._key(level, index)] = value

    def put_many(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        for level, index, value in nodes:
            self.put(level, index, value)

    def items(self) -> Iterable[tuple[int, int, bytes]]:
        for key, value in self._nodes.items():
            yield key & 63, key >> 6, value

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        if not isinstance(node, tuple) or len(node) != 2:
            return False
        level, index = node
        return (
            isinstance(level, int)
            and isinstance(index, int)
            and (self._key(level, index) in self._nodes)
        )


# ----------------------------------------------------------------------------- hashing from leaves


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """Root of the tree over ``leaf_hashes`` (RFC 9162 MTH), in O(n) time and O(log n) memory."""
    # Right edge of perfect subtrees, largest first; a carry merges equal-sized neighbours.
    edge: list[bytes] = []
    for size, leaf in enumerate(leaf_hashes):
        h, carry = leaf, size
        while carry & 1:
            h = node_hash(edge.pop(), h)
            carry >>= 1
        edge.append(h)
    return _fold_right(edge) if edge else EMPTY_ROOT


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    # Perfect subtrees listed left to right in decreasing size hash together right to left: that
    # is exactly the left-full split of RFC 9162 for a range starting at an aligned position.
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


# ---------------------------------------------------------------------------- node decomposition


def _check_size(size: int) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise TlogRangeError(f"tree size {size} out of range")


def _range_node_ids(start: int, end: int) -> list[NodeId]:
    """Perfect subtrees covering ``[start, end)``, left to right (largest aligned first)."""
    ids: list[NodeId] = []
    while start < end:
        # Largest power of two that both aligns with start and fits in the rest of the range.
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        ids.append((level, start >> level))
        start += 1 << level
    return ids


def _split(n: int) -> int:
    # Largest power of two strictly smaller than n (n >= 2): the RFC 9162 left-full split point.
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Subtree ranges of the audit path, leaf sibling first (RFC 9162 2.1.3.1 PATH)."""
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Subtree ranges of the consistency proof (RFC 9162 2.1.4.1 SUBPROOF with b = true)."""
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, new_size, old_size, True
    while m != end - start:
        n = end - start
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def _range_hash(reader: NodeReader, start: int, end: int) -> bytes:
    return _fold_right([_get(reader, level, index) for level, index in _range_node_ids(start, end)])


def _get(reader: NodeReader, level: int, index: int) -> bytes:
    try:
        value = reader.get(level, index)
    except KeyError:
        raise TlogNodeMissingError(f"node ({level}, {index}) is not stored") from None
    if len(value) != HASH_SIZE:
        raise TlogNodeMissingError(f"node ({level}, {index}) is not a {HASH_SIZE}-byte hash")
    return value


def _flatten(ranges: Iterable[tuple[int, int]]) -> list[NodeId]:
    ids: list[NodeId] = []
    for start, end in ranges:
        ids.extend(_range_node_ids(start, end))
    return ids


def inclusion_proof_node_ids(index: int, size: int) -> list[NodeId]:
    """Every stored node :func:`inclusion_proof` reads: fetch them in one query, then call it."""
    _check_inclusion_args(index, size)
    return _flatten(_inclusion_ranges(index, size))


def consistency_proof_node_ids(old_size: int, new_size: int) -> list[NodeId]:
    """Every stored node :func:`consistency_proof` reads."""
    _check_consistency_args(old_size, new_size)
    return _flatten(_consistency_ranges(old_size, new_size))


def root_node_ids(size: int) -> list[NodeId]:
    """The perfect subtrees whose fold is the root of a tree of ``size`` leaves (its right edge)."""
    _check_size(size)
    return _range_node_ids(0, size)


def _check_inclusion_args(index: int, size: int) -> None:
    _check_size(size)
    if not 0 <= index < size:
        raise TlogRangeError(f"index {index} is outside a tree of size {size}")


def _check_consistency_args(old_size: int, new_size: int) -> None:
    _check_size(new_size)
    if not 0 <= old_size <= new_size:
        raise TlogRangeError(f"cannot prove size {old_size} consistent with size {new_size}")


# ---------------------------------------------------------------------- proofs from stored nodes


def tree_root(size: int, reader: NodeReader) -> bytes:
    """Root of the tree of ``size`` leaves computed from O(log n) stored nodes."""
    _check_size(size)
    return _range_hash(reader, 0, size) if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """Audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 2.1.3.1)."""
    _check_inclusion_args(index, size)
    return [_range_hash(reader, s, e) for s, e in _inclusion_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, reader: NodeReader) -> list[bytes]:
    """Consistency proof from ``old_size`` to ``new_size`` (RFC 9162 2.1.4.1)."""
    _check_consistency_args(old_size, new_size)
    return [_range_hash(reader, s, e) for s, e in _consistency_ranges(old_size, new_size)]


# -------------------------------------------------------------------------------- verification


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise TlogProofInvalidError(f"{what}: every hash must be {HASH_SIZE} bytes")


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Root implied by an audit path (RFC 9162 2.1.3.2 steps 1-4); raises if the shape is wrong."""
    _check_hashes("inclusion proof", [leaf_hash, *proof])
    if not 0 <= index < size <= MAX_TREE_SIZE:
        raise TlogProofInvalidError(f"index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise TlogProofInvalidError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise TlogProofInvalidError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree with ``root``; raise if not."""
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if not isinstance(root, bytes) or not hmac.compare_digest(computed, root):
        raise TlogProofInvalidError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that tree ``old_root`` is a prefix of tree ``new_root`` (RFC 9162 2.1.4.2)."""
    _check_hashes("consistency proof", proof)
    if not 0 <= old_size <= new_size <= MAX_TREE_SIZE:
        raise TlogProofInvalidError(f"size {old_size} cannot precede size {new_size}")
    if old_size == new_size:
        if proof:
            raise TlogProofInvalidError("consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(old_root, new_root):
            raise TlogProofInvalidError("equal sizes with different roots")
        return
    if old_size == 0:
        # Every tree extends the empty tree; RFC 9162 defines no proof for it.
        if proof:
            raise TlogProofInvalidError("consistency proof from the empty tree must be empty")
        return
    _check_hashes("consistency proof", [old_root, new_root])
    if not proof:
        raise TlogProofInvalidError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise TlogProofInvalidError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    ok_old = hmac.compare_digest(fr, old_root)
    ok_new = hmac.compare_digest(sr, new_root)
    if sn != 0 or not (ok_old and ok_new):
        raise TlogProofInvalidError("consistency proof does not verify")
