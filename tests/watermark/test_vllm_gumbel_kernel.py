"""The numba kernel of the vLLM-Gumbel detector gives the NumPy path's bits, on every input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import watermark.vllm_gumbel as module
from watermark._private import philox_kernel
from watermark.vllm_gumbel import GumbelConfig, GumbelDetection, GumbelKey, detect_many

pytest.importorskip("numba")

DATA: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vllm_gumbel_vectors.json").read_text(encoding="utf-8")
)


def _both(
    texts: Sequence[Any], config: GumbelConfig, key: GumbelKey, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[GumbelDetection], list[GumbelDetection]]:
    kernel = philox_kernel.gumbel_kernel()
    assert kernel is not None
    with monkeypatch.context() as patch:
        patch.setattr(module, "gumbel_kernel", lambda: kernel)
        compiled = detect_many(texts, config, key, alpha=0.5)
    with monkeypatch.context() as patch:
        patch.setattr(module, "gumbel_kernel", lambda: None)
        numpy_path = detect_many(texts, config, key, alpha=0.5)
    return compiled, numpy_path


def _assert_same_bits(a: GumbelDetection, b: GumbelDetection) -> None:
    assert a.tokens_total == b.tokens_total
    assert a.tokens_scored == b.tokens_scored
    assert a.green_count == b.green_count
    # Same float64 bits, not approximately equal.
    assert np.float64(a.score).tobytes() == np.float64(b.score).tobytes()
    assert np.float64(a.log10_p_value).tobytes() == np.float64(b.log10_p_value).tobytes()
    assert a.watermarked == b.watermarked
    assert a.flags.dtype == b.flags.dtype
    assert a.flags.tolist() == b.flags.tolist()


def test_the_kernel_is_compiled_when_numba_is_installed() -> None:
    # numba is installed here (the engine extra): a missing kernel would cost ~3-10x silently.
    assert philox_kernel.gumbel_kernel() is not None


def test_env_var_turns_the_kernel_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERGATE_GUMBEL_KERNEL", "numpy")
    assert philox_kernel._compile() is None


# Ids from a tiny alphabet repeat contexts often (the deduplication's work); the large ones
# exercise all 32 bits of a word and every lane of the token block.
_IDS = st.one_of(st.integers(0, 4), st.integers(0, 2**31 - 1))


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.lists(_IDS, max_size=60), max_size=6),
    width=st.integers(1, 10),
    dedup=st.booleans(),
    key=st.integers(0, (1 << 64) - 1),
)
def test_kernel_equals_numpy_bit_for_bit(
    texts: list[list[int]], width: int, dedup: bool, key: int
) -> None:
    config = GumbelConfig(context_width=width, deduplicate_contexts=dedup)
    with pytest.MonkeyPatch.context() as monkeypatch:
        compiled, numpy_path = _both(texts, config, GumbelKey(key), monkeypatch)
    assert len(compiled) == len(numpy_path) == len(texts)
    for a, b in zip(compiled, numpy_path, strict=True):
        _assert_same_bits(a, b)


def test_long_repetitive_text_probes_past_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20,000 tokens over 3 ids, width 8: a crowded table, long probe chains, few distinct contexts.
    rng = np.random.default_rng(17)
    texts = [rng.integers(0, 3, size=20_000).tolist(), rng.integers(0, 3, size=7).tolist()]
    config = GumbelConfig(context_width=8)
    compiled, numpy_path = _both(texts, config, GumbelKey(2**64 - 1), monkeypatch)
    for a, b in zip(compiled, numpy_path, strict=True):
        _assert_same_bits(a, b)
    assert 0 < compiled[0].tokens_scored < 3**8 + 8


@pytest.mark.parametrize("sample", DATA["samples"], ids=lambda s: f"w{s['context_width']}")
def test_vllm_vectors_through_both_paths(
    sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = GumbelConfig(
        context_width=sample["context_width"],
        deduplicate_contexts=sample["deduplicate_contexts"],
    )
    for key_text, expected in (
        (sample["key"], sample["vllm_detection"]),
        (DATA["wrong_key"], sample["vllm_detection_wrong_key"]),
    ):
        compiled, numpy_path = _both(
            [sample["token_ids"]], config, GumbelKey(int(key_text)), monkeypatch
        )
        _assert_same_bits(compiled[0], numpy_path[0])
        assert compiled[0].tokens_scored == expected["num_scored_tokens"]
        assert compiled[0].score == pytest.approx(expected["score"], rel=1e-12)


@pytest.mark.parametrize(
    "ids",
    [[True, False], [1, 2.5], [1, "2"], [1, 1 << 70], [1, [2]], [1, -1], [1, 1 << 31]],
)
def test_the_list_fast_path_refuses_what_numpy_refuses(ids: list[Any]) -> None:
    with pytest.raises(module.InvalidTokensError):
        module.detect(ids, GumbelConfig(), GumbelKey(1))


def test_the_list_fast_path_equals_an_array(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = np.random.default_rng(3).integers(0, 2**31 - 1, size=500)
    as_list = module.detect(ids.tolist(), GumbelConfig(), GumbelKey(5))
    as_array = module.detect(ids, GumbelConfig(), GumbelKey(5))
    _assert_same_bits(as_list, as_array)
