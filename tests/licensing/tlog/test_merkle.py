"""RFC 6962 reference vectors, transparency-dev/merkle proof cases and proof properties."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.errors import (
    LicensingError,
    TlogNodeMissingError,
    TlogProofInvalidError,
    TlogRangeError,
)
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import (
    EMPTY_ROOT,
    NodeStore,
    consistency_proof,
    consistency_proof_node_ids,
    inclusion_proof,
    inclusion_proof_node_ids,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# The eight reference leaves of RFC 6962's test tree, as used by transparency-dev/merkle.
LEAVES = [
    b"",
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
# Roots of the trees over the first 1..8 leaves (transparency-dev/merkle proof/verify_test.go).
ROOTS = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")

# (1-based leaf, tree size, proof) from transparency-dev/merkle inclusionProofs.
INCLUSION_CASES = [
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (1, 1, []),
]

# (size1, size2, proof) from transparency-dev/merkle consistencyProofs.
CONSISTENCY_CASES = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


def _store(leaf_hashes: Sequence[bytes]) -> NodeStore:
    return NodeStore(append_batch(CompactRange.empty(), list(leaf_hashes)).nodes)


REF_STORE = _store([leaf_hash(x) for x in LEAVES])


# --- literal RFC 9162 definitions over the full leaf list, used as the oracle -----------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(_mth(d[:k]), _mth(d[k:]))


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [_mth(d)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


# --- reference vectors ---------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root_from_leaf_hashes([]) == hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert tree_root(0, NodeStore()) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_reference_roots(size: int) -> None:
    hashes = [leaf_hash(x) for x in LEAVES[:size]]
    assert root_from_leaf_hashes(hashes) == ROOTS[size - 1]
    assert tree_root(size, REF_STORE) == ROOTS[size - 1]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_CASES)
def test_transparency_dev_inclusion_vectors(leaf: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(leaf - 1, size, REF_STORE) == proof
    lh = leaf_hash(LEAVES[leaf - 1])
    verify_inclusion(lh, leaf - 1, size, proof, ROOTS[size - 1])
    for desc, probe in _corrupt_inclusion(leaf - 1, size, proof, ROOTS[size - 1], lh):
        _assert_rejected(desc, verify_inclusion, *probe)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_CASES)
def test_transparency_dev_consistency_vectors(size1: int, size2: int, proof: list[bytes]) -> None:
    assert consistency_proof(size1, size2, REF_STORE) == proof
    r1, r2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    verify_consistency(size1, size2, r1, r2, proof)
    if proof:
        for desc, probe in _corrupt_consistency(size1, size2, r1, r2, proof):
            _assert_rejected(desc, verify_consistency, *probe)


def test_transparency_dev_testdata_consistency_happy_path() -> None:
    # testdata/consistency/1/happy-path.json, in its published base64 form.
    b = base64.b64decode
    verify_consistency(
        1,
        8,
        b("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="),
        b("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="),
        [
            b("lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c="),
            b("Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4="),
            b("a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="),
        ],
    )


# (size1, size2, root1, root2, proof, want_ok) from TestVerifyConsistency.
_R1, _R2 = b"don't care 1", b"don't care 2"


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "ok"),
    [
        (0, 0, _R1, _R2, [], False),
        (1, 1, _R1, _R2, [], False),
        (0, 0, _R1, _R1, [], True),
        (0, 1, _R1, _R2, [], True),
        (1, 1, _R2, _R2, [], True),
        (1, 0, _R1, _R2, [], False),
        (2, 1, _R1, _R2, [], False),
        (1, 2, _R1, _R2, [], False),
        (0, 0, EMPTY_ROOT, _R2, [], False),
        (1, 1, EMPTY_ROOT, _R2, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_transparency_dev_consistency_edge_cases(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        verify_consistency(size1, size2, root1, root2, proof)
    else:
        with pytest.raises(TlogProofInvalidError):
            verify_consistency(size1, size2, root1, root2, proof)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_transparency_dev_inclusion_invalid_probes(index: int, size: int) -> None:
    for leaf, root in [(SOME_HASH, b""), (b"", EMPTY_ROOT), (SOME_HASH, EMPTY_ROOT)]:
        with pytest.raises(TlogProofInvalidError):
            verify_inclusion(leaf, index, size, [], root)


def test_single_entry_inclusion() -> None:
    lh = leaf_hash(b"data")
    verify_inclusion(lh, 0, 1, [], lh)
    for leaf, root in [(lh, b""), (b"", lh), (b"", b"")]:
        with pytest.raises(TlogProofInvalidError):
            verify_inclusion(leaf, 0, 1, [], root)


def _assert_rejected(desc: str, verify: Callable[..., None], *args: object) -> None:
    try:
        verify(*args)
    except TlogProofInvalidError:
        return
    pytest.fail(f"proof verified against {desc}")


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, lh: bytes
) -> list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    probes = [
        ("index-1", (lh, index - 1, size, proof, root)),
        ("index+1", (lh, index + 1, size, proof, root)),
        ("index^2", (lh, index ^ 2, size, proof, root)),
        ("size*2", (lh, index, size * 2, proof, root)),
        ("size/2", (lh, index, size // 2, proof, root)),
        ("wrong leaf", (b"WrongLeaf", index, size, proof, root)),
        ("empty root", (lh, index, size, proof, EMPTY_ROOT)),
        ("random root", (lh, index, size, proof, SOME_HASH)),
        ("trailing garbage", (lh, index, size, [*proof, b""], root)),
        ("trailing root", (lh, index, size, [*proof, root], root)),
        ("preceding garbage", (lh, index, size, [b"", *proof], root)),
        ("preceding root", (lh, index, size, [root, *proof], root)),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((f"modified proof[{i}]", (lh, index, size, bad, root)))
    if proof:
        probes.append(("removed component", (lh, index, size, proof[:-1], root)))
    if len(proof) > 1:
        probes.append(
            ("inserted component", (lh, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
        )
    return probes


def _corrupt_consistency(
    s1: int, s2: int, r1: bytes, r2: bytes, proof: list[bytes]
) -> list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]]:
    probes = [
        ("size1-1", (s1 - 1, s2, r1, r2, proof)),
        ("size1+1", (s1 + 1, s2, r1, r2, proof)),
        ("size1^2", (s1 ^ 2, s2, r1, r2, proof)),
        ("size2*2", (s1, s2 * 2, r1, r2, proof)),
        ("size2/2", (s1, s2 // 2, r1, r2, proof)),
        ("wrong root1", (s1, s2, b"WrongRoot", r2, proof)),
        ("wrong root2", (s1, s2, r1, b"WrongRoot", proof)),
        ("swapped roots", (s1, s2, r2, r1, proof)),
        ("empty proof", (s1, s2, r1, r2, [])),
        ("trailing garbage", (s1, s2, r1, r2, [*proof, b""])),
        ("trailing root1", (s1, s2, r1, r2, [*proof, r1])),
        ("trailing root2", (s1, s2, r1, r2, [*proof, r2])),
        ("preceding garbage", (s1, s2, r1, r2, [b"", *proof])),
        ("preceding root1", (s1, s2, r1, r2, [r1, *proof])),
        ("preceding root2", (s1, s2, r1, r2, [r2, *proof])),
        ("preceding proof[0]", (s1, s2, r1, r2, [proof[0], *proof])),
        ("truncated proof", (s1, s2, r1, r2, proof[:-1])),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((f"modified proof[{i}]", (s1, s2, r1, r2, bad)))
    return probes


# --- generation errors --------------------------------------------------------------------------


def test_proof_requests_out_of_range_raise_range_error() -> None:
    with pytest.raises(TlogRangeError):
        inclusion_proof(8, 8, REF_STORE)
    with pytest.raises(TlogRangeError):
        inclusion_proof(-1, 8, REF_STORE)
    with pytest.raises(TlogRangeError):
        consistency_proof(5, 4, REF_STORE)
    with pytest.raises(TlogRangeError):
        inclusion_proof_node_ids(0, 0)


def test_missing_node_raises_typed_error() -> None:
    with pytest.raises(TlogNodeMissingError):
        inclusion_proof(0, 9, REF_STORE)
    with pytest.raises(TlogNodeMissingError):
        consistency_proof(3, 9, REF_STORE)


def test_node_ids_name_exactly_the_nodes_read() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.seen: list[tuple[int, int]] = []

        def get(self, level: int, index: int) -> bytes:
            self.seen.append((level, index))
            return REF_STORE.get(level, index)

    for size in range(1, 9):
        for index in range(size):
            rec = Recorder()
            inclusion_proof(index, size, rec)
            assert rec.seen == inclusion_proof_node_ids(index, size)
        for old in range(size + 1):
            rec = Recorder()
            consistency_proof(old, size, rec)
            assert rec.seen == consistency_proof_node_ids(old, size)


def test_verifiers_never_leak_foreign_exceptions() -> None:
    bad_inputs: list[Callable[[], object]] = [
        lambda: verify_inclusion(b"x", 0, 1, [], b"y"),
        lambda: root_from_inclusion_proof(SOME_HASH, 5, 2, []),
        lambda: verify_consistency(1, 2, SOME_HASH, SOME_HASH, [b"short"]),
        lambda: verify_consistency(-1, 2, SOME_HASH, SOME_HASH, []),
        lambda: verify_consistency(1, 2**64, SOME_HASH, SOME_HASH, [SOME_HASH]),
    ]
    for call in bad_inputs:
        with pytest.raises(LicensingError):
            call()


# --- properties ---------------------------------------------------------------------------------


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@st.composite
def _tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 300))
    return size, draw(st.integers(0, size - 1))


@settings(max_examples=150, deadline=None)
@given(_tree_and_index())
def test_every_inclusion_proof_verifies_and_matches_rfc(case: tuple[int, int]) -> None:
    size, index = case
    hashes = _leaves(size)
    store = _store(hashes)
    root = root_from_leaf_hashes(hashes)
    assert root == _mth(hashes) == tree_root(size, store)
    proof = inclusion_proof(index, size, store)
    assert proof == _path(index, hashes)
    verify_inclusion(hashes[index], index, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(_tree_and_index(), st.data())
def test_every_mutated_inclusion_proof_fails(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    hashes = _leaves(size)
    store = _store(hashes)
    root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(index, size, store)
    mutations: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (hashes[(index + 1) % size], index, size, proof, root)
        if size > 1
        else (SOME_HASH, index, size, proof, root),
        (hashes[index], index, size, [*proof, SOME_HASH], root),
    ]
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        mutations.append((hashes[index], other, size, proof, root))
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[i] = (
            bad[i][: bit // 8]
            + bytes([bad[i][bit // 8] ^ (1 << (bit % 8))])
            + bad[i][bit // 8 + 1 :]
        )
        mutations.append((hashes[index], index, size, bad, root))
        mutations.append((hashes[index], index, size, proof[:-1], root))
        mutations.append((hashes[index], index, size, proof[1:], root))
    for args in mutations:
        with pytest.raises(TlogProofInvalidError):
            verify_inclusion(*args)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.data())
def test_every_consistency_proof_verifies_and_mutations_fail(
    size: int, data: st.DataObject
) -> None:
    old = data.draw(st.integers(0, size))
    hashes = _leaves(size)
    store = _store(hashes)
    old_root, new_root = root_from_leaf_hashes(hashes[:old]), root_from_leaf_hashes(hashes)
    proof = consistency_proof(old, size, store)
    if 0 < old < size:
        assert proof == _subproof(old, hashes, True)
    verify_consistency(old, size, old_root, new_root, proof)
    if not proof:
        return
    i = data.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
    forked = list(hashes)
    forked[data.draw(st.integers(0, old - 1))] = SOME_HASH
    for args in [
        (old, size, old_root, new_root, bad),
        (old, size, old_root, new_root, proof[:-1]),
        (old, size, old_root, new_root, [*proof, SOME_HASH]),
        (old, size, root_from_leaf_hashes(forked[:old]), new_root, proof),
        (old, size, old_root, root_from_leaf_hashes(forked), proof),
    ]:
        with pytest.raises(TlogProofInvalidError):
            verify_consistency(*args)
