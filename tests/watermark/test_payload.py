"""Multi-bit payload: round trip, check code, zero-bit detection on the same text."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from watermark.config import PayloadSettings, WatermarkConfig
from watermark.detector import detect
from watermark.errors import PayloadError, WatermarkConfigError
from watermark.keys import WatermarkKey
from watermark.payload import decode_payload, detect_payload, payload_symbols

Sampler = Callable[..., np.ndarray]


@pytest.mark.parametrize("payload", [0, 1, 0xABCDE, (1 << 20) - 1])
def test_symbols_round_trip(payload: int) -> None:
    from watermark.payload import _from_symbols

    settings = PayloadSettings(payload_bits=20)
    assert _from_symbols(payload_symbols(payload, settings), settings) == (payload, True)


@pytest.mark.parametrize("bits", [16, 20, 24])
@pytest.mark.parametrize("bits_per_symbol", [1, 2, 3])
def test_settings_shapes(bits: int, bits_per_symbol: int) -> None:
    settings = PayloadSettings(payload_bits=bits, bits_per_symbol=bits_per_symbol)
    symbols = payload_symbols((1 << bits) - 3, settings)
    assert len(symbols) == settings.num_slots
    assert max(symbols) < settings.num_colours


def test_payload_is_recovered(
    payload_config: WatermarkConfig, key: WatermarkKey, sampler: Sampler
) -> None:
    ids = sampler(payload_config, key, length=300, payload=0x5A5A5, seed=1)[0]
    decoded = decode_payload(ids, payload_config, key)
    assert decoded.valid
    assert decoded.payload == 0x5A5A5
    assert len(decoded.confidences) == payload_config.payload.num_slots  # type: ignore[union-attr]
    assert min(decoded.confidences) > 0.5
    assert decoded.detection is not None
    assert decoded.detection.watermarked
    zero_bit = detect(ids, payload_config, key)
    assert zero_bit.watermarked
    assert zero_bit.payload is not None
    assert zero_bit.payload.payload == 0x5A5A5
    exact = detect_payload(ids, payload_config, key, 0x5A5A5)
    assert exact.p_value < zero_bit.p_value  # no multiple-testing cost once the payload is known
    assert not detect_payload(ids, payload_config, key, 0x12345).watermarked


def test_batch_rows_carry_their_own_payloads(
    payload_config: WatermarkConfig, key: WatermarkKey
) -> None:
    import torch

    from watermark.processor import GreenListProcessor

    proc = GreenListProcessor(payload_config, key, payload=[111, 222222])
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, payload_config.vocab_size, (2, 1), generator=gen)
    for _ in range(300):
        scores = proc(ids, torch.randn(2, payload_config.vocab_size, generator=gen) * 3)
        ids = torch.cat([ids, torch.multinomial(torch.softmax(scores, -1), 1, generator=gen)], 1)
    assert decode_payload(ids[0, 1:].numpy(), payload_config, key).payload == 111
    assert decode_payload(ids[1, 1:].numpy(), payload_config, key).payload == 222222


def test_unwatermarked_text_has_no_valid_payload_mostly(
    payload_config: WatermarkConfig, key: WatermarkKey
) -> None:
    rng = np.random.default_rng(0)
    results = [decode_payload(rng.integers(0, 1009, 300), payload_config, key) for _ in range(200)]
    assert sum(r.valid for r in results) <= 5  # CRC-8 lets ~1/256 through
    assert sum(r.detection.watermarked for r in results if r.detection) == 0


def test_payload_errors(
    payload_config: WatermarkConfig, config: WatermarkConfig, key: WatermarkKey
) -> None:
    settings = PayloadSettings(payload_bits=16)
    with pytest.raises(PayloadError):
        payload_symbols(1 << 16, settings)
    with pytest.raises(PayloadError):
        payload_symbols(-1, settings)
    with pytest.raises(WatermarkConfigError):
        decode_payload([1, 2, 3], config, key)
    with pytest.raises(WatermarkConfigError):
        PayloadSettings(payload_bits=20, check="crc64")
    with pytest.raises(WatermarkConfigError):
        WatermarkConfig.create(key, 1009, gamma=0.5, payload=PayloadSettings())


def test_list_decoding_repairs_a_weak_slot(payload_config: WatermarkConfig) -> None:
    from watermark.payload import _list_decode

    settings = payload_config.payload
    assert settings is not None
    symbols = payload_symbols(0x0F0F0, settings)
    counts = np.full((settings.num_slots, settings.num_colours), 1)
    for i, s in enumerate(symbols):
        counts[i, s] = 9
    wrong = (symbols[3] + 1) % settings.num_colours
    counts[3, wrong] = 10  # slot 3 narrowly decodes to the wrong colour
    found = _list_decode(counts, settings, 16)
    assert found == (symbols, 1)
