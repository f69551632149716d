"""The fused CPU kernel gives the same bits as the torch ops, for every scheme variant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watermark._private import cpu_kernel
from watermark.config import PayloadSettings, WatermarkConfig
from watermark.errors import InvalidTokensError, PayloadError
from watermark.keys import WatermarkKey
from watermark.processor import GreenListProcessor

torch = pytest.importorskip("torch")


def _torch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("watermark.processor.fused_bias_kernel", lambda: None)


def test_numba_kernel_is_available() -> None:
    # numba is a declared dependency: a missing kernel would silently cost 4-5x per step.
    assert cpu_kernel.fused_bias_kernel() is not None


def test_env_var_turns_the_kernel_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERGATE_WATERMARK_KERNEL", "torch")
    assert cpu_kernel._compile() is None


@settings(max_examples=40, deadline=None)
@given(
    vocab=st.integers(min_value=2, max_value=3000),
    batch=st.integers(min_value=1, max_value=5),
    width=st.integers(min_value=1, max_value=4),
    gamma=st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]),
    delta=st.floats(min_value=0.1, max_value=8.0),
    payload=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_fused_equals_torch_ops(
    vocab: int,
    batch: int,
    width: int,
    gamma: float,
    delta: float,
    payload: bool,
    seed: int,
) -> None:
    key = WatermarkKey(seed.to_bytes(4, "little") * 8)
    settings_ = PayloadSettings(payload_bits=8, bits_per_symbol=2) if payload else None
    if payload:
        gamma = 0.25  # one colour of four
    config = WatermarkConfig.create(
        key, vocab, gamma=gamma, delta=delta, context_width=width, payload=settings_
    )
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, width + 3), generator=gen)
    scores = torch.randn(batch, vocab, generator=gen) * 4
    payloads = [(seed + row) % 256 for row in range(batch)] if payload else None
    fused = GreenListProcessor(config, key, payload=payloads)(ids, scores)
    with pytest.MonkeyPatch.context() as patch:
        _torch_only(patch)
        reference = GreenListProcessor(config, key, payload=payloads)(ids, scores)
    assert torch.equal(fused, reference)


def test_fused_path_keeps_masks_and_nans(key: WatermarkKey, config: WatermarkConfig) -> None:
    scores = torch.zeros(2, config.vocab_size)
    scores[0, :7] = -float("inf")
    scores[1, 3] = float("nan")
    out = GreenListProcessor(config, key, inplace=True)(torch.tensor([[5], [9]]), scores)
    assert out.data_ptr() == scores.data_ptr()
    assert torch.isneginf(out[0, :7]).all()
    assert torch.isnan(out[1, 3])


def test_non_contiguous_logits_fall_back(key: WatermarkKey, config: WatermarkConfig) -> None:
    wide = torch.randn(config.vocab_size, 2)
    scores = wide.t()  # (2, V), not contiguous
    ids = torch.tensor([[5], [9]])
    out = GreenListProcessor(config, key)(ids, scores)
    expected = GreenListProcessor(config, key)(ids, scores.contiguous())
    assert torch.equal(out, expected)


def test_out_of_vocabulary_ids_are_refused_before_any_change(
    key: WatermarkKey, config: WatermarkConfig
) -> None:
    scores = torch.zeros(2, config.vocab_size)
    ids = torch.tensor([[5], [config.vocab_size]])
    with pytest.raises(InvalidTokensError, match="row 1"):
        GreenListProcessor(config, key, inplace=True)(ids, scores)
    assert (scores == 0).all()  # row 0 untouched too
    with pytest.raises(InvalidTokensError, match="row 0"):
        GreenListProcessor(config, key)(torch.tensor([[-1], [3]]), scores)


def test_payload_rows_must_match_the_batch(key: WatermarkKey) -> None:
    config = WatermarkConfig.create(key, 1009, payload=PayloadSettings(payload_bits=8))
    processor = GreenListProcessor(config, key, payload=[1, 2, 3])
    with pytest.raises(PayloadError, match="3 payloads for a batch of 2"):
        processor(torch.tensor([[5], [6]]), torch.zeros(2, 1009))
