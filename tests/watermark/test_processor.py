"""The sampling-time processor: shapes, dtypes, odd vocab sizes, non-finite logits, generate()."""

from __future__ import annotations

import math

import pytest

from watermark.config import WatermarkConfig
from watermark.detector import detect
from watermark.errors import (
    InvalidLogitsError,
    InvalidTokensError,
    PayloadError,
    VocabMismatchError,
    WatermarkKeyError,
)
from watermark.keys import WatermarkKey
from watermark.processor import GreenListProcessor, apply_watermark, build_logits_processors

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("vocab", [2, 1009, 50257, 32001])
@pytest.mark.parametrize("batch", [1, 3])
def test_odd_vocab_sizes_and_batch_of_one(key: WatermarkKey, vocab: int, batch: int) -> None:
    config = WatermarkConfig.create(key, vocab, gamma=0.5, delta=1.5)
    scores = torch.zeros(batch, vocab)
    out = GreenListProcessor(config, key)(torch.ones(batch, 4, dtype=torch.int64), scores)
    assert out.shape == (batch, vocab)
    assert set(out.unique().tolist()) <= {0.0, 1.5}
    assert (scores == 0).all()  # not in place by default
    if vocab > 1000:
        assert abs(float((out == 1.5).float().mean()) - 0.5) < 0.05


def test_inplace_and_dtypes(config: WatermarkConfig, key: WatermarkKey) -> None:
    ids = torch.tensor([[3, 4]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        scores = torch.zeros(1, config.vocab_size, dtype=dtype)
        out = GreenListProcessor(config, key, inplace=True)(ids, scores)
        assert out.dtype == dtype
        assert out.data_ptr() == scores.data_ptr()
    int32_ids = GreenListProcessor(config, key)(
        ids.to(torch.int32), torch.zeros(1, config.vocab_size)
    )
    assert torch.equal(
        int32_ids, GreenListProcessor(config, key)(ids, torch.zeros(1, config.vocab_size))
    )


def test_non_finite_logits(config: WatermarkConfig, key: WatermarkKey) -> None:
    scores = torch.zeros(2, config.vocab_size)
    scores[0, :10] = -math.inf  # masked by top-k: must stay masked
    scores[1, 0] = math.nan
    out = GreenListProcessor(config, key)(torch.tensor([[1], [2]]), scores)
    assert torch.isneginf(out[0, :10]).all()
    assert math.isnan(float(out[1, 0]))
    with pytest.raises(InvalidLogitsError):
        GreenListProcessor(config, key, check_finite=True)(torch.tensor([[1], [2]]), scores)
    scores[1, 0] = math.inf
    with pytest.raises(InvalidLogitsError):
        GreenListProcessor(config, key, check_finite=True)(torch.tensor([[1], [2]]), scores)


def test_bad_shapes(config: WatermarkConfig, key: WatermarkKey) -> None:
    proc = GreenListProcessor(config, key)
    with pytest.raises(VocabMismatchError):
        proc(torch.tensor([[1]]), torch.zeros(1, config.vocab_size + 1))
    with pytest.raises(InvalidLogitsError):
        proc(torch.tensor([[1], [2]]), torch.zeros(1, config.vocab_size))
    with pytest.raises(InvalidLogitsError):
        proc(torch.tensor([[1]]), torch.zeros(config.vocab_size))
    with pytest.raises(InvalidLogitsError):
        proc(torch.tensor([[1]]), torch.zeros(1, config.vocab_size, dtype=torch.int64))
    with pytest.raises(InvalidTokensError):
        proc(torch.tensor([[1.0]]), torch.zeros(1, config.vocab_size))


def test_short_context_is_left_unbiased(key: WatermarkKey) -> None:
    config = WatermarkConfig.create(key, 101, context_width=3)
    scores = torch.zeros(1, 101)
    assert torch.equal(GreenListProcessor(config, key)(torch.tensor([[1, 2]]), scores), scores)


def test_key_and_payload_checks(
    config: WatermarkConfig,
    payload_config: WatermarkConfig,
    key: WatermarkKey,
    other_key: WatermarkKey,
) -> None:
    with pytest.raises(WatermarkKeyError):
        GreenListProcessor(config, other_key)
    with pytest.raises(PayloadError):
        GreenListProcessor(config, key, payload=5)
    with pytest.raises(PayloadError):
        GreenListProcessor(payload_config, key)
    with pytest.raises(PayloadError):
        GreenListProcessor(payload_config, key, payload=1 << 20)
    proc = GreenListProcessor(payload_config, key, payload=[1, 2])
    with pytest.raises(PayloadError):
        proc(torch.tensor([[1], [2], [3]]), torch.zeros(3, payload_config.vocab_size))


def test_apply_watermark_function(config: WatermarkConfig, key: WatermarkKey) -> None:
    ids = torch.tensor([[7, 8]])
    scores = torch.randn(1, config.vocab_size)
    assert torch.equal(
        apply_watermark(ids, scores, config, key), GreenListProcessor(config, key)(ids, scores)
    )


def test_generate_with_a_tiny_model(key: WatermarkKey) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model_config = transformers.GPT2Config(
        vocab_size=1009, n_positions=256, n_embd=32, n_layer=1, n_head=2
    )
    model = transformers.GPT2LMHeadModel(model_config).eval()
    config = WatermarkConfig.create(key, 1009, delta=4.0)
    processors = build_logits_processors(config, key, temperature=0.9, top_k=200)
    assert isinstance(processors[-1], transformers.LogitsProcessor)
    prompt = torch.tensor([[1, 2, 3, 4]])
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=80,
        min_new_tokens=80,
        logits_processor=processors,
        pad_token_id=0,
    )
    result = detect(out[0].tolist(), config, key, prompt_length=4)
    assert result.watermarked, result
