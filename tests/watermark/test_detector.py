"""Zero-bit detection: power, exact p-values, null calibration, dedupe, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.watermark.conftest import VOCAB, FakeTokenizer
from watermark._private.binom import log_binom_sf
from watermark.config import WatermarkConfig
from watermark.detector import GREEN, UNSCORED, detect, detect_text, scan
from watermark.errors import (
    InsufficientTextError,
    InvalidTokensError,
    TokenizerMismatchError,
    VocabMismatchError,
    WatermarkConfigError,
    WatermarkKeyError,
)
from watermark.keys import WatermarkKey

Sampler = Callable[..., np.ndarray]


def test_watermarked_text_is_detected(
    config: WatermarkConfig, key: WatermarkKey, sampler: Sampler
) -> None:
    ids = sampler(config, key, length=200)[0]
    result = detect(ids, config, key)
    assert result.watermarked
    assert result.z_score > 4
    assert result.p_value < 1e-6
    assert result.tokens_total == 200
    assert result.tokens_scored <= 199
    assert result.green_fraction == result.green_count / result.tokens_scored
    assert result.config == config
    assert result.flags.shape == (200,)
    assert result.flags[0] == UNSCORED  # no context for the first token
    assert int((result.flags == GREEN).sum()) == result.green_count


def test_unwatermarked_text_is_not(
    config: WatermarkConfig, key: WatermarkKey, sampler: Sampler
) -> None:
    ids = sampler(config, None, length=200, seed=3)[0]
    result = detect(ids, config, key)
    assert not result.watermarked
    assert result.p_value > 1e-4


def test_wrong_key_does_not_detect(
    config: WatermarkConfig, key: WatermarkKey, other_key: WatermarkKey, sampler: Sampler
) -> None:
    ids = sampler(config, key, length=200)[0]
    other = WatermarkConfig.create(other_key, VOCAB)
    assert not detect(ids, other, other_key).watermarked


def test_key_must_match_config(config: WatermarkConfig, other_key: WatermarkKey) -> None:
    with pytest.raises(WatermarkKeyError):
        detect([1, 2, 3], config, other_key)


def test_repeated_pairs_are_counted_once(config: WatermarkConfig, key: WatermarkKey) -> None:
    # Templated text: the same bigram 100 times is one piece of evidence, not 100.
    result = detect([5, 7] * 100, config, key)
    assert result.tokens_scored == 2  # (5 -> 7) and (7 -> 5)
    assert not result.watermarked


def test_prompt_prefix_is_context_only(
    config: WatermarkConfig, key: WatermarkKey, sampler: Sampler
) -> None:
    ids = sampler(config, key, length=120)[0]
    full = detect(ids, config, key)
    tail = detect(ids, config, key, prompt_length=40)
    assert tail.tokens_scored < full.tokens_scored
    assert (tail.flags[:40] == UNSCORED).all()
    assert (tail.flags[40:] == full.flags[40:]).all()


@pytest.mark.parametrize("ids", [[], np.array([], dtype=np.int64)])
def test_empty_input(config: WatermarkConfig, key: WatermarkKey, ids: object) -> None:
    with pytest.raises(InsufficientTextError):
        detect(ids, config, key)


def test_text_shorter_than_context(key: WatermarkKey) -> None:
    config = WatermarkConfig.create(key, VOCAB, context_width=4)
    with pytest.raises(InsufficientTextError):
        detect([1, 2, 3, 4], config, key)
    assert detect([1, 2, 3, 4, 5], config, key).tokens_scored == 1


@pytest.mark.parametrize(
    "bad", [[1, VOCAB], [-1, 2], [1, 2**70], [1.5, 2], [True, 2], "12", [[1, 2]]]
)
def test_bad_token_ids(config: WatermarkConfig, key: WatermarkKey, bad: object) -> None:
    with pytest.raises(InvalidTokensError):
        detect(bad, config, key)


def test_bad_alpha(config: WatermarkConfig, key: WatermarkKey) -> None:
    with pytest.raises(WatermarkConfigError):
        detect([1, 2, 3], config, key, alpha=0.0)


def test_detect_text_maps_flags_to_spans(
    key: WatermarkKey, tokenizer: FakeTokenizer, sampler: Sampler
) -> None:
    config = WatermarkConfig.create(key, VOCAB, tokenizer=tokenizer)
    ids = sampler(config, key, length=150)[0]
    text = tokenizer.decode(ids)
    result = detect_text(text, tokenizer, config, key)
    assert result.watermarked
    assert result.offsets is not None
    assert len(result.offsets) == len(result.flags) == 150
    start, end = result.offsets[3]
    assert text[start:end] == tokenizer.inverse[int(ids[3])]
    assert "flags" in result.to_dict()


def test_detect_text_rejects_other_tokenizer(key: WatermarkKey, tokenizer: FakeTokenizer) -> None:
    config = WatermarkConfig.create(key, VOCAB, tokenizer=tokenizer)
    with pytest.raises(TokenizerMismatchError):
        detect_text("wz1 wz2 wz3", FakeTokenizer(salt="z"), config, key)


def test_detect_text_rejects_bigger_vocab(key: WatermarkKey) -> None:
    config = WatermarkConfig.create(key, 100)
    with pytest.raises(VocabMismatchError):
        detect_text("w1 w2 w3", FakeTokenizer(), config, key)
    with pytest.raises(VocabMismatchError):
        WatermarkConfig.create(key, 100, tokenizer=FakeTokenizer())


def test_detect_text_empty(
    config: WatermarkConfig, key: WatermarkKey, tokenizer: FakeTokenizer
) -> None:
    with pytest.raises(InsufficientTextError):
        detect_text("", tokenizer, config, key)


def test_scan_finds_the_watermarked_passage(
    config: WatermarkConfig, key: WatermarkKey, sampler: Sampler
) -> None:
    plain = sampler(config, None, length=600, seed=11)[0]
    marked = sampler(config, key, length=150, seed=12)[0]
    mixed = np.concatenate([plain[:300], marked, plain[300:]])
    assert not detect(plain, config, key).watermarked
    found = scan(mixed, config, key, window=150, stride=10)
    assert found.watermarked
    assert 250 <= found.start <= 350
    assert found.adjusted_p_value >= found.p_value


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 120),
    k=st.integers(0, 125),
    p=st.sampled_from([0.1, 0.25, 0.5, 0.75]),
)
def test_binomial_tail_is_exact(n: int, k: int, p: float) -> None:
    q = Fraction(p)
    exact = sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(max(k, 0), n + 1))
    got = log_binom_sf(k, n, p)
    if exact == 0:
        assert got == -math.inf
    else:
        expected = math.log(exact.numerator) - math.log(exact.denominator)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_binomial_tail_far_below_double_range() -> None:
    # All 2000 tokens green at gamma 0.25: p = 0.25**2000, far below the smallest double.
    assert log_binom_sf(2000, 2000, 0.25) == pytest.approx(2000 * math.log(0.25), rel=1e-12)


def test_null_p_values_are_uniform(config: WatermarkConfig, key: WatermarkKey) -> None:
    # Uniformly random tokens: the false positive rate at level a must be about a (<= a).
    rng = np.random.default_rng(7)
    p_values = np.array(
        [detect(rng.integers(0, VOCAB, 200), config, key).p_value for _ in range(2000)]
    )
    for level in (0.01, 0.05, 0.2, 0.5):
        rate = float((p_values <= level).mean())
        assert rate <= level + 3 * math.sqrt(level * (1 - level) / 2000) + 0.005
        # Discreteness makes the exact test conservative, but not wildly so at n ~ 200.
        assert rate >= level * 0.5


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 3), self_seeded=st.booleans())
def test_null_green_fraction_is_gamma(seed: int, h: int, self_seeded: bool) -> None:
    key = WatermarkKey(seed.to_bytes(4, "big") * 4)
    config = WatermarkConfig.create(key, VOCAB, context_width=h, self_seeded=self_seeded)
    ids = np.random.default_rng(seed).integers(0, VOCAB, 4000)
    result = detect(ids, config, key)
    assert abs(result.green_fraction - 0.25) < 5 * math.sqrt(0.25 * 0.75 / result.tokens_scored)


def test_torch_tensor_input(config: WatermarkConfig, key: WatermarkKey, sampler: Sampler) -> None:
    torch = pytest.importorskip("torch")
    ids = sampler(config, key, length=100)[0]
    assert detect(torch.from_numpy(ids), config, key) == detect(ids, config, key)


def test_scan_flags_keeps_the_log_p_value_where_the_p_value_underflows() -> None:
    """The gateway's attribution scans payload flags with this one implementation."""
    from watermark.detector import GREEN, scan_flags

    found = scan_flags(np.full(2000, GREEN), 0.25, window=2000)
    assert found.p_value == 0.0  # underflows as a float ...
    assert found.log_adjusted_p_value == pytest.approx(2000 * math.log(0.25), rel=1e-9)
    assert found.watermarked
    with pytest.raises(WatermarkConfigError):
        scan_flags(np.full(10, GREEN), 1.0)
