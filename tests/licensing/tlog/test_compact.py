"""The incremental appender persists exactly the nodes a from-scratch tree has."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.errors import TlogInconsistentError, TlogRangeError
from licensing.tlog.compact import CompactRange, append_batch, load_compact_range
from licensing.tlog.merkle import (
    EMPTY_ROOT,
    NodeStore,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    root_node_ids,
    tree_root,
)


def _scratch_nodes(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of the tree over ``leaves``, built level by level."""
    nodes: dict[tuple[int, int], bytes] = {}
    level, row = 0, leaves
    while row:
        for i, value in enumerate(row):
            nodes[(level, i)] = value
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
    return nodes


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(b"entry %d" % i) for i in range(n)]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(0, 70), max_size=12))
def test_batched_appends_equal_from_scratch_tree(batches: list[int]) -> None:
    leaves = _leaves(sum(batches))
    state = CompactRange.empty()
    persisted: list[tuple[int, int, bytes]] = []
    done = 0
    for b in batches:
        result = append_batch(state, leaves[done : done + b])
        done += b
        persisted.extend(result.nodes)
        state = result.state
        assert state.size == done
        assert result.root == root_from_leaf_hashes(leaves[:done])
        # The appender state can always be rebuilt from what was persisted so far.
        assert load_compact_range(done, NodeStore(persisted)) == state
    ids = [(level, index) for level, index, _ in persisted]
    assert len(ids) == len(set(ids)), "a node was emitted twice"
    assert {(lv, i): v for lv, i, v in persisted} == _scratch_nodes(leaves)
    assert tree_root(done, NodeStore(persisted)) == state.root()


def test_empty_batch_and_empty_state() -> None:
    result = append_batch(CompactRange.empty(), [])
    assert result.nodes == []
    assert result.root == EMPTY_ROOT
    assert CompactRange.empty().root() == EMPTY_ROOT


def test_hashing_cost_is_linear_in_batch() -> None:
    # A batch emits each leaf plus each completed parent once: fewer than 2B nodes.
    state = append_batch(CompactRange.empty(), _leaves(1000)).state
    result = append_batch(state, _leaves(24))
    assert 24 <= len(result.nodes) < 2 * 24 + state.size.bit_length()


def test_state_must_match_size() -> None:
    with pytest.raises(TlogInconsistentError):
        CompactRange(3, (b"\x00" * 32,))
    with pytest.raises(TlogInconsistentError):
        CompactRange(1, (b"short",))
    with pytest.raises(TlogRangeError):
        CompactRange(-1, ())


def test_bad_leaf_hash_rejected() -> None:
    with pytest.raises(TlogRangeError):
        append_batch(CompactRange.empty(), [b"not a hash"])


def test_load_reports_missing_right_edge() -> None:
    nodes = append_batch(CompactRange.empty(), _leaves(6)).nodes
    store = NodeStore(n for n in nodes if (n[0], n[1]) != (1, 2))
    with pytest.raises(TlogInconsistentError):
        load_compact_range(6, store)
    assert root_node_ids(6) == [(2, 0), (1, 2)]
