"""Tamper evidence: every edit, deletion, insertion or reorder of entries or nodes is reported."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.errors import TlogInconsistentError
from licensing.tlog.audit import (
    ProblemKind,
    check_consistency,
    check_log,
    recompute_and_compare,
    recompute_and_compare_indexed,
)
from licensing.tlog.checkpoint import Checkpoint
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import EMPTY_ROOT, NodeStore, consistency_proof, leaf_hash

ORIGIN = "log.example/tiergate"


def _build(n: int) -> tuple[list[bytes], NodeStore, Checkpoint]:
    entries = [b'{"call": %d}' % i for i in range(n)]
    result = append_batch(CompactRange.empty(), [leaf_hash(e) for e in entries])
    return entries, NodeStore(result.nodes), Checkpoint(ORIGIN, n, result.root)


ENTRIES, STORE, CHECKPOINT = _build(37)


def _kind(entries: list[bytes], store: NodeStore = STORE) -> ProblemKind | None:
    problem = recompute_and_compare(entries, store, CHECKPOINT)
    return None if problem is None else problem.kind


def test_untouched_log_is_consistent() -> None:
    assert recompute_and_compare(ENTRIES, STORE, CHECKPOINT) is None
    check_log(ENTRIES, STORE, CHECKPOINT)


def test_empty_log() -> None:
    assert recompute_and_compare([], NodeStore(), Checkpoint(ORIGIN, 0, EMPTY_ROOT)) is None


@pytest.mark.parametrize("i", [0, 1, 17, 35, 36])
def test_edited_entry(i: int) -> None:
    entries = list(ENTRIES)
    entries[i] = entries[i] + b" "
    problem = recompute_and_compare(entries, STORE, CHECKPOINT)
    assert problem is not None
    assert (problem.kind, problem.index) == (ProblemKind.ENTRY_EDITED, i)
    with pytest.raises(TlogInconsistentError, match="entry_edited"):
        check_log(entries, STORE, CHECKPOINT)


@pytest.mark.parametrize("i", [0, 5, 35])
def test_deleted_entry(i: int) -> None:
    assert _kind(ENTRIES[:i] + ENTRIES[i + 1 :]) == ProblemKind.ENTRY_DELETED


def test_deleted_last_entry_is_missing() -> None:
    assert _kind(ENTRIES[:-1]) == ProblemKind.ENTRIES_MISSING


@pytest.mark.parametrize("i", [0, 5, 36])
def test_inserted_entry(i: int) -> None:
    assert _kind([*ENTRIES[:i], b"forged", *ENTRIES[i:]]) == ProblemKind.ENTRY_INSERTED


def test_duplicated_entry() -> None:
    assert _kind([*ENTRIES[:6], ENTRIES[5], *ENTRIES[6:]]) == ProblemKind.ENTRY_INSERTED


@pytest.mark.parametrize(("i", "j"), [(0, 1), (4, 5), (3, 20), (0, 36)])
def test_reordered_entries(i: int, j: int) -> None:
    entries = list(ENTRIES)
    entries[i], entries[j] = entries[j], entries[i]
    problem = recompute_and_compare(entries, STORE, CHECKPOINT)
    assert problem is not None
    assert (problem.kind, problem.index) == (ProblemKind.ENTRIES_REORDERED, i)


def test_indexed_rows_report_gaps() -> None:
    rows = [(i, e) for i, e in enumerate(ENTRIES) if i != 9]
    problem = recompute_and_compare_indexed(rows, STORE, CHECKPOINT)
    assert problem is not None
    assert (problem.kind, problem.index) == (ProblemKind.ENTRY_DELETED, 9)


def test_edited_or_missing_node() -> None:
    for level, index in [(0, 3), (1, 7), (3, 2), (5, 0)]:
        tampered = NodeStore(STORE.items())
        tampered.put(level, index, leaf_hash(b"evil"))
        problem = recompute_and_compare(ENTRIES, tampered, CHECKPOINT)
        assert problem is not None
        want = ProblemKind.ENTRY_EDITED if level == 0 else ProblemKind.NODE_MISMATCH
        assert (problem.kind, problem.level, problem.index) == (want, level, index)
        missing = NodeStore((lv, i, v) for lv, i, v in STORE.items() if (lv, i) != (level, index))
        problem = recompute_and_compare(ENTRIES, missing, CHECKPOINT)
        assert problem is not None
        assert problem.kind == ProblemKind.NODE_MISSING


def test_rewritten_log_does_not_match_signed_root() -> None:
    entries = list(ENTRIES)
    entries[10] = b"rewritten"
    # An attacker with database access recomputes every node consistently...
    result = append_batch(CompactRange.empty(), [leaf_hash(e) for e in entries])
    # ...but cannot re-sign the checkpoint.
    assert _kind(entries, NodeStore(result.nodes)) == ProblemKind.ROOT_MISMATCH


def test_entries_after_checkpoint_are_checked_against_nodes() -> None:
    entries, store, _ = _build(50)
    assert recompute_and_compare(entries, store, CHECKPOINT) is None
    entries[45] = b"late edit"
    assert _kind(entries, store) == ProblemKind.ENTRY_EDITED


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 80), st.data())
def test_any_single_tamper_is_detected(n: int, data: st.DataObject) -> None:
    entries, store, checkpoint = _build(n)
    i = data.draw(st.integers(0, n - 1))
    action = data.draw(st.sampled_from(["edit", "delete", "insert", "swap", "node"]))
    tampered_store = store
    if action == "edit":
        entries[i] += b"!"
    elif action == "delete":
        del entries[i]
    elif action == "insert":
        entries.insert(i, b"forged")
    elif action == "swap":
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
        entries[i], entries[j] = entries[j], entries[i]
    else:
        tampered_store = NodeStore(store.items())
        level = data.draw(st.integers(0, max(0, (n - 1).bit_length() - 1)))
        index = data.draw(st.integers(0, max(0, (n >> level) - 1)))
        if (level, index) not in store:
            return
        tampered_store.put(level, index, leaf_hash(b"evil"))
    assert recompute_and_compare(entries, tampered_store, checkpoint) is not None


def test_check_consistency() -> None:
    entries, store, new = _build(20)
    old = Checkpoint(
        ORIGIN, 13, append_batch(CompactRange.empty(), [leaf_hash(e) for e in entries[:13]]).root
    )
    proof = consistency_proof(13, 20, store)
    check_consistency(old, new, proof)
    with pytest.raises(TlogInconsistentError):
        check_consistency(new, old, proof)
    with pytest.raises(TlogInconsistentError):
        check_consistency(Checkpoint(ORIGIN, 13, leaf_hash(b"fork")), new, proof)
    with pytest.raises(TlogInconsistentError):
        check_consistency(Checkpoint("other.example", 13, old.root_hash), new, proof)
    with pytest.raises(TlogInconsistentError):
        check_consistency(new, Checkpoint(ORIGIN, 20, leaf_hash(b"fork")), [])
