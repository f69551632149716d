"""Fixtures of the watermark tests: a fixed key, small configs, a word-level fake tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from watermark.config import PayloadSettings, WatermarkConfig
from watermark.keys import WatermarkKey

VOCAB = 1009  # prime on purpose: nothing may assume a power of two


@pytest.fixture
def key() -> WatermarkKey:
    return WatermarkKey(bytes(range(32)))


@pytest.fixture
def other_key() -> WatermarkKey:
    return WatermarkKey(b"another key, 32 bytes long......")


@pytest.fixture
def config(key: WatermarkKey) -> WatermarkConfig:
    return WatermarkConfig.create(key, VOCAB, gamma=0.25, delta=2.0)


@pytest.fixture
def payload_config(key: WatermarkKey) -> WatermarkConfig:
    return WatermarkConfig.create(key, VOCAB, delta=2.5, payload=PayloadSettings(payload_bits=20))


def sample_tokens(
    config: WatermarkConfig,
    key: WatermarkKey | None,
    *,
    length: int,
    batch: int = 1,
    seed: int = 0,
    payload: int | None = None,
    spread: float = 3.0,
) -> np.ndarray:
    """Sample ``batch`` sequences from random logits (``key=None``: no watermark)."""
    import torch

    from watermark.processor import GreenListProcessor

    generator = torch.Generator().manual_seed(seed)
    processor = GreenListProcessor(config, key, payload=payload) if key is not None else None
    ids = torch.randint(0, config.vocab_size, (batch, config.context_width), generator=generator)
    for _ in range(length):
        scores = torch.randn(batch, config.vocab_size, generator=generator) * spread
        if processor is not None:
            scores = processor(ids, scores)
        probs = torch.softmax(scores, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        ids = torch.cat([ids, nxt], dim=1)
    out: np.ndarray = ids[:, config.context_width :].numpy()
    return out


@pytest.fixture
def sampler() -> Callable[..., np.ndarray]:
    return sample_tokens


class FakeTokenizer:
    """Whitespace tokenizer over a fixed word list; enough of the transformers interface."""

    def __init__(self, size: int = VOCAB, salt: str = "") -> None:
        self.vocab = {f"w{salt}{i}": i for i in range(size)}
        self.inverse = {i: t for t, i in self.vocab.items()}

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab[word] for word in text.split()]

    def __call__(self, text: str, **kwargs: Any) -> dict[str, Any]:
        ids, offsets, pos = [], [], 0
        for word in text.split():
            start = text.index(word, pos)
            ids.append(self.vocab[word])
            offsets.append((start, start + len(word)))
            pos = start + len(word)
        return {"input_ids": ids, "offset_mapping": offsets}

    def decode(self, ids: Any) -> str:
        return " ".join(self.inverse[int(i)] for i in ids)


@pytest.fixture
def tokenizer() -> FakeTokenizer:
    return FakeTokenizer()
