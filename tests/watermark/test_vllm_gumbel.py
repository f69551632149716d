"""The vLLM Gumbel-max detector: vLLM-made vectors, a scalar Philox reference, the exact tail."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watermark.errors import (
    InvalidTokensError,
    UnsupportedSchemeError,
    WatermarkConfigError,
    WatermarkKeyError,
)
from watermark.vllm_gumbel import (
    GREEN,
    RED,
    UNSCORED,
    GumbelConfig,
    GumbelKey,
    detect,
    detect_many,
    load_gumbel_key_file,
    log_gamma_sf,
    prf_uniforms,
)

DATA: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vllm_gumbel_vectors.json").read_text(encoding="utf-8")
)
WATERMARKED = [s for s in DATA["samples"] if s["watermarked"]]
PLAIN = [s for s in DATA["samples"] if not s["watermarked"]]
MASK = 0xFFFFFFFF


# -- an independent scalar Philox4x32-10, straight from the paper's definition ----------------


def _round(c: list[int], k: list[int]) -> list[int]:
    p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
    return [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK]


def _philox(c: list[int], k: list[int]) -> list[int]:
    k = list(k)
    for r in range(10):
        c = _round(c, k)
        if r < 9:
            k = [(k[0] + 0x9E3779B9) & MASK, (k[1] + 0xBB67AE85) & MASK]
    return c


def reference_uniform(key: int, context: list[int], token: int) -> np.float32:
    k0, k1 = key & MASK, key >> 32
    width = len(context)
    state = [0x574D4358, width, 0, 0]
    words = [x & MASK for x in context]
    for offset in range(0, width, 4):
        block = [words[offset + i] if offset + i < width else MASK - i for i in range(4)]
        state = _philox([s ^ b for s, b in zip(state, block, strict=True)], [k0 ^ offset, k1])
    out = _philox([token >> 2, state[0], state[1], state[2]], [k0 ^ state[3], k1 ^ 0x574D544B])
    mantissa = out[token & 3] >> 8
    return np.float32((mantissa + 1.0) / (2**24 + 1))


# -- the PRF ------------------------------------------------------------------------------------


def test_prf_matches_vllm_bit_for_bit() -> None:
    cases = DATA["prf"]
    assert len(cases) >= 100
    by_key: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        by_key.setdefault(f"{case['key']}/{len(case['context'])}", []).append(case)
    for group in by_key.values():
        key = GumbelKey(int(group[0]["key"]))
        got = prf_uniforms([c["context"] for c in group], [c["token"] for c in group], key)
        assert got.view(np.uint32).tolist() == [c["uniform_float32_bits"] for c in group]
        for case in group[:2]:
            bits = reference_uniform(key.value, case["context"], case["token"]).view(np.uint32)
            assert int(bits) == case["uniform_float32_bits"]


@settings(max_examples=200, deadline=None)
@given(
    key=st.integers(0, (1 << 64) - 1),
    rows=st.lists(
        st.tuples(st.lists(st.integers(-1, MASK), min_size=3, max_size=3), st.integers(0, MASK)),
        min_size=1,
        max_size=8,
    ),
)
def test_vectorized_prf_equals_the_scalar_reference(
    key: int, rows: list[tuple[list[int], int]]
) -> None:
    got = prf_uniforms([r[0] for r in rows], [r[1] for r in rows], GumbelKey(key))
    want = [reference_uniform(key, c, t) for c, t in rows]
    assert got.view(np.uint32).tolist() == [int(w.view(np.uint32)) for w in want]
    assert ((got > 0) & (got < 1)).all()


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 13), key=st.integers(0, (1 << 64) - 1), seed=st.integers(0, 2**32))
def test_every_context_width_agrees_with_the_reference(width: int, key: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    contexts = rng.integers(-1, 1 << 31, size=(3, width))
    tokens = rng.integers(0, 1 << 31, size=3)
    got = prf_uniforms(contexts, tokens, GumbelKey(key))
    want = [
        reference_uniform(key, c.tolist(), int(t)) for c, t in zip(contexts, tokens, strict=True)
    ]
    assert got.view(np.uint32).tolist() == [int(w.view(np.uint32)) for w in want]


# -- detection on vLLM's own outputs ---------------------------------------------------------


def _config(sample: dict[str, Any]) -> GumbelConfig:
    return GumbelConfig(
        context_width=sample["context_width"],
        deduplicate_contexts=sample["deduplicate_contexts"],
    )


@pytest.mark.parametrize("sample", DATA["samples"], ids=lambda s: f"w{s['context_width']}")
def test_statistics_equal_vllms_detector(sample: dict[str, Any]) -> None:
    for key_text, expected in (
        (sample["key"], sample["vllm_detection"]),
        (DATA["wrong_key"], sample["vllm_detection_wrong_key"]),
    ):
        found = detect(sample["token_ids"], _config(sample), GumbelKey(int(key_text)))
        assert found.tokens_scored == expected["num_scored_tokens"]
        assert found.score == pytest.approx(expected["score"], rel=1e-12)
        if expected["p_value"] > 1e-300:
            assert found.p_value == pytest.approx(expected["p_value"], rel=1e-6)
        else:  # vLLM's p underflows to 0.0; ours stays exact in log space
            assert found.log10_p_value < -300


@pytest.mark.parametrize("sample", WATERMARKED, ids=lambda s: f"w{s['context_width']}")
def test_vllm_watermarked_text_is_detected(sample: dict[str, Any]) -> None:
    found = detect(sample["token_ids"], _config(sample), GumbelKey(int(sample["key"])))
    assert found.watermarked
    assert found.p_value < 1e-10
    assert found.z_score > 10
    assert found.green_fraction > 0.7


@pytest.mark.parametrize("sample", DATA["samples"], ids=lambda s: f"w{s['context_width']}")
def test_wrong_key_and_plain_text_are_not_flagged(sample: dict[str, Any]) -> None:
    wrong = detect(sample["token_ids"], _config(sample), GumbelKey(int(DATA["wrong_key"])))
    assert not wrong.watermarked
    assert wrong.p_value > 1e-3
    if not sample["watermarked"]:
        right = detect(sample["token_ids"], _config(sample), GumbelKey(int(sample["key"])))
        assert not right.watermarked


def test_seeded_random_text_is_not_flagged_at_the_nominal_rate() -> None:
    # 2000 seeded random texts; under H0 p is uniform, so about 2000 * 0.01 fall below 0.01.
    rng = np.random.default_rng(2026)
    texts = [rng.integers(0, 50_000, size=int(rng.integers(20, 200))) for _ in range(2000)]
    found = detect_many(texts, GumbelConfig(), GumbelKey(0x5EED_CAFE_F00D_1234))
    p = np.array([f.p_value for f in found])
    assert not any(f.watermarked for f in found)
    assert 5 <= int((p < 0.01).sum()) <= 45  # Binomial(2000, 0.01): mean 20, sd 4.4
    assert 0.45 < float(np.mean(p)) < 0.55


# -- score plumbing -----------------------------------------------------------------------------


def _reference_scored(ids: list[int], width: int, dedup: bool) -> list[int]:
    seen: set[tuple[int, ...]] = set()
    out = []
    prefix = [-1] * width
    for i, token in enumerate(ids):
        context = tuple(prefix[-width:])
        if not dedup or context not in seen:
            seen.add(context)
            out.append(i)
        prefix.append(token)
    return out


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(st.lists(st.integers(0, 5), max_size=40), min_size=1, max_size=5),
    width=st.integers(1, 5),
    dedup=st.booleans(),
    key=st.integers(0, (1 << 64) - 1),
)
def test_batched_scoring_equals_one_text_at_a_time_and_the_reference(
    texts: list[list[int]], width: int, dedup: bool, key: int
) -> None:
    config, gkey = GumbelConfig(context_width=width, deduplicate_contexts=dedup), GumbelKey(key)
    batch = detect_many(texts, config, gkey, alpha=0.5)
    for ids, found in zip(texts, batch, strict=True):
        single = detect(ids, config, gkey, alpha=0.5)
        scored = _reference_scored(ids, width, dedup)
        assert found.tokens_scored == single.tokens_scored == len(scored)
        assert found.score == pytest.approx(single.score, rel=1e-12, abs=1e-12)
        assert np.flatnonzero(found.flags != UNSCORED).tolist() == scored
        if scored:
            padded = [-1] * width + ids
            contexts = [padded[i : i + width] for i in scored]
            u = [reference_uniform(key, c, ids[i]) for c, i in zip(contexts, scored, strict=True)]
            want = sum(-math.log1p(-float(x)) for x in u)
            assert found.score == pytest.approx(want, rel=1e-12)
            assert [int(found.flags[i]) for i in scored] == [GREEN if x >= 0.5 else RED for x in u]
        else:
            assert found.p_value == 1.0
            assert not found.watermarked


def test_digest_collisions_cannot_merge_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force every digest equal: the exact grouping must take over and give the same answer.
    import watermark.vllm_gumbel as module

    ids = [1, 2, 3, 1, 2, 3, 1, 2, 4, 4, 4, 4, 4]
    monkeypatch.setattr(module, "gumbel_kernel", lambda: None)  # the NumPy path's grouping
    honest = detect(ids, GumbelConfig(context_width=2), GumbelKey(9))
    real = module.context_states

    def colliding(contexts: Any, key: int) -> Any:
        s = real(contexts, key)
        return (np.zeros_like(s[0]), np.zeros_like(s[1]), s[2], s[3])

    monkeypatch.setattr(module, "context_states", colliding)
    # The token stage uses the (now wrong) state words, so compare what is scored only.
    forced = detect(ids, GumbelConfig(context_width=2), GumbelKey(9))
    assert forced.tokens_scored == honest.tokens_scored == len(_reference_scored(ids, 2, True))
    assert (forced.flags == UNSCORED).tolist() == (honest.flags == UNSCORED).tolist()


# -- the exact p-value --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), ratio=st.floats(0.05, 8.0))
def test_gamma_tail_equals_mpmath(n: int, ratio: float) -> None:
    x = n * ratio
    with mpmath.workdps(40):
        want = float(mpmath.log(mpmath.gammainc(n, x, mpmath.inf, regularized=True)))
    got = log_gamma_sf(x, n)
    assert got <= 0.0
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_gamma_tail_stays_finite_far_below_double_range() -> None:
    got = log_gamma_sf(5000.0, 200)  # p ~ 1e-1900: no double holds it, its log is exact
    with mpmath.workdps(40):
        want = float(mpmath.log(mpmath.gammainc(200, 5000, mpmath.inf, regularized=True)))
    assert got == pytest.approx(want, rel=1e-12)
    assert log_gamma_sf(0.0, 10) == 0.0
    assert log_gamma_sf(3.0, 0) == 0.0


# -- bad input ------------------------------------------------------------------------------------


def test_keys_parse_without_echoing_and_never_print(tmp_path: Path) -> None:
    assert GumbelKey.from_text(" 18446744073709551615\n").value == (1 << 64) - 1
    assert GumbelKey.from_text("0xFF").value == 255
    secret = "18446744073709551616"  # 2**64: one too many
    for bad in (secret, "-1", "12a", "", "0x", "1" * 30):
        with pytest.raises(WatermarkKeyError) as info:
            GumbelKey.from_text(bad)
        assert len(bad) < 3 or bad not in str(info.value)
    key = GumbelKey(123456789)
    assert "123456789" not in repr(key) + str(key) + f"{key}"
    path = tmp_path / "k"
    path.write_text("123456789\n")
    assert load_gumbel_key_file(path) == key
    with pytest.raises(WatermarkKeyError):
        load_gumbel_key_file(tmp_path / "missing")
    path.write_bytes(b"9" * 300)
    with pytest.raises(WatermarkKeyError):
        load_gumbel_key_file(path)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"context_width": 0}, WatermarkConfigError),
        ({"context_width": 65}, WatermarkConfigError),
        ({"context_width": True}, WatermarkConfigError),
        ({"deduplicate_contexts": "yes"}, WatermarkConfigError),
        ({"algorithm": "dual_key_gumbel"}, UnsupportedSchemeError),
        ({"prf": "aes"}, UnsupportedSchemeError),
    ],
)
def test_bad_configs_are_typed_errors(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        GumbelConfig(**kwargs)


@pytest.mark.parametrize("ids", [[-1, 2], [1 << 31], [MASK], [[1, 2]], ["a"], [1.5]])
def test_bad_token_ids_are_typed_errors(ids: Any) -> None:
    with pytest.raises(InvalidTokensError):
        detect(ids, GumbelConfig(), GumbelKey(1))


def test_bad_alpha_and_key_types() -> None:
    with pytest.raises(WatermarkConfigError):
        detect([1, 2], GumbelConfig(), GumbelKey(1), alpha=1.0)
    with pytest.raises(WatermarkKeyError):
        GumbelKey(1 << 64)
    with pytest.raises(WatermarkKeyError):
        GumbelKey(True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3000, 50_000), ratio=st.floats(0.7, 1.5))
def test_gamma_tail_of_long_texts_equals_mpmath(n: int, ratio: float) -> None:
    # Long texts take the windowed sum (terms near the largest only): same value.
    x = n * ratio
    with mpmath.workdps(40):
        want = float(mpmath.log(mpmath.gammainc(n, x, mpmath.inf, regularized=True)))
    got = log_gamma_sf(x, n)
    assert got <= 0.0
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
