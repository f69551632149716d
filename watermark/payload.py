"""Multi-bit payload (MPAC-style): a context picks a payload slot; its symbol's colour is favoured.

The vocabulary is split by the PRF word into ``2**b`` colour lists; the context word picks which
of the ``L`` symbols of the coded payload (data bits + CRC-8) a position carries; the processor
favours the list of that symbol. Decoding takes the most frequent colour of each slot and checks
the CRC. Zero-bit detection on the same text uses the best-message count, corrected (union bound)
for all ``2**(L*b)`` messages; once the payload is known (e.g. from the call log),
:func:`detect_payload` gives an exact, uncorrected per-call test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from watermark._private.binom import log_binom_sf
from watermark._private.np_prf import slots
from watermark._private.scoring import flags_for, score_positions
from watermark.config import PayloadSettings, WatermarkConfig
from watermark.detector import DEFAULT_ALPHA, DetectionResult, result_from_counts
from watermark.errors import PayloadError, WatermarkConfigError
from watermark.keys import WatermarkKey

__all__ = ["PayloadDecoding", "crc8", "decode_payload", "detect_payload", "payload_symbols"]

_LOG2 = math.log(2.0)


def crc8(value: int, nbits: int) -> int:
    """CRC-8 (poly 0x07, init 0, unreflected) over the ``nbits`` bits of ``value``, MSB first."""
    crc = 0
    for i in range(nbits - 1, -1, -1):
        bit = (value >> i) & 1
        top = (crc >> 7) & 1
        crc = (crc << 1) & 0xFF
        if top ^ bit:
            crc ^= 0x07
    return crc


def _settings(config: WatermarkConfig) -> PayloadSettings:
    if config.payload is None:
        raise WatermarkConfigError("this watermark config carries no payload")
    return config.payload


def payload_symbols(payload: int, settings: PayloadSettings) -> tuple[int, ...]:
    """The ``num_slots`` symbols (each ``bits_per_symbol`` bits) that carry ``payload`` + CRC."""
    if isinstance(payload, bool) or not isinstance(payload, int):
        raise PayloadError("payload must be an integer")
    if not 0 <= payload < (1 << settings.payload_bits):
        raise PayloadError(f"payload must be in 0..2**{settings.payload_bits}-1, got {payload}")
    b = settings.bits_per_symbol
    coded = (payload << settings.check_bits) | crc8(payload, settings.payload_bits)
    width = settings.num_slots * b
    coded <<= width - settings.total_bits
    mask = settings.num_colours - 1
    return tuple((coded >> (width - (i + 1) * b)) & mask for i in range(settings.num_slots))


def _from_symbols(symbols: tuple[int, ...], settings: PayloadSettings) -> tuple[int, bool]:
    coded = 0
    for symbol in symbols:
        coded = (coded << settings.bits_per_symbol) | symbol
    coded >>= settings.num_slots * settings.bits_per_symbol - settings.total_bits
    data = coded >> settings.check_bits
    check = coded & ((1 << settings.check_bits) - 1)
    return data, crc8(data, settings.payload_bits) == check


@dataclass(frozen=True)
class PayloadDecoding:
    """A decoded payload: ``payload`` is None unless the check code matches."""

    payload: int | None
    valid: bool
    raw_payload: int
    symbols: tuple[int, ...]
    confidences: tuple[float, ...]
    counts: tuple[tuple[int, ...], ...]
    tokens_scored: int
    p_value: float
    log10_p_value: float
    corrections: int = 0
    detection: DetectionResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": self.payload,
            "valid": self.valid,
            "raw_payload": self.raw_payload,
            "symbols": list(self.symbols),
            "confidences": list(self.confidences),
            "counts": [list(row) for row in self.counts],
            "tokens_scored": self.tokens_scored,
            "p_value": self.p_value,
            "log10_p_value": self.log10_p_value,
            "corrections": self.corrections,
        }


def _list_decode(
    counts: Any, settings: PayloadSettings, list_size: int
) -> tuple[tuple[int, ...], int] | None:
    """First CRC-valid candidate among runner-up swaps of the least certain slots."""
    order = np.argsort(counts, axis=1, kind="stable")
    best, second = order[:, -1], order[:, -2]
    rows = np.arange(counts.shape[0])
    margins = counts[rows, best] - counts[rows, second]
    flippable = [int(i) for i in np.argsort(margins, kind="stable")]
    width = min(len(flippable), max(1, int(math.log2(list_size))))
    weak = flippable[:width]
    subsets = sorted(
        range(1, 1 << width),
        key=lambda m: (sum(int(margins[weak[j]]) for j in range(width) if m >> j & 1), m),
    )
    for mask in subsets[: list_size - 1]:
        symbols = [int(s) for s in best]
        for j in range(width):
            if mask >> j & 1:
                symbols[weak[j]] = int(second[weak[j]])
        candidate = tuple(symbols)
        if _from_symbols(candidate, settings)[1]:
            return candidate, bin(mask).count("1")
    return None


def _colours_and_slots(
    token_ids: Any, config: WatermarkConfig, key: WatermarkKey, prompt_length: int
) -> tuple[Any, Any, Any]:
    settings = _settings(config)
    scored = score_positions(token_ids, config, key, prompt_length=prompt_length)
    colours = (scored.words >> np.uint32(32 - settings.bits_per_symbol)).astype(np.int64)
    return scored, colours, slots(scored.x, settings.num_slots)


def decode_payload(
    token_ids: Any,
    config: WatermarkConfig,
    key: WatermarkKey,
    *,
    prompt_length: int = 0,
    alpha: float = DEFAULT_ALPHA,
    list_size: int = 16,
) -> PayloadDecoding:
    """Recover the payload; ``detection`` holds the zero-bit verdict for the same text.

    When the most frequent colours fail the check code and the text is watermarked
    (``p <= alpha``), up to ``list_size`` candidates that swap the least certain slots to
    their runner-up colour are tried, most likely first (CRC-aided list decoding);
    ``corrections`` says how many symbols were swapped. Gating on the zero-bit verdict keeps
    unwatermarked text from buying extra chances to pass the CRC.
    """
    settings = _settings(config)
    scored, colours, slot = _colours_and_slots(token_ids, config, key, prompt_length)
    r, num_slots = settings.num_colours, settings.num_slots
    counts = np.bincount(slot * r + colours, minlength=num_slots * r).reshape(num_slots, r)
    symbols = tuple(int(s) for s in counts.argmax(axis=1))
    best = counts.max(axis=1)
    per_slot = counts.sum(axis=1)
    confidences = tuple(
        0.0
        if n == 0
        else max(0.0, 1.0 - math.exp(min(0.0, log_binom_sf(int(m), int(n), 1 / r))) * r)
        for m, n in zip(best.tolist(), per_slot.tolist(), strict=True)
    )
    raw, valid = _from_symbols(symbols, settings)
    n = int(colours.shape[0])
    green = int(best.sum())
    # The decoder picked the best of 2**(L*b) messages; the union bound keeps p valid.
    log_p = min(0.0, log_binom_sf(green, n, 1 / r) + num_slots * settings.bits_per_symbol * _LOG2)
    # Flags follow the statistic: the most frequent colour of each slot, before any correction.
    is_green = colours == np.asarray(symbols, dtype=np.int64)[slot]
    corrections = 0
    if not valid and list_size > 1 and log_p <= math.log(alpha):
        found = _list_decode(counts, settings, list_size)
        if found is not None:
            symbols, corrections = found
            raw, valid = _from_symbols(symbols, settings)
    decoding = PayloadDecoding(
        payload=raw if valid else None,
        valid=valid,
        raw_payload=raw,
        symbols=symbols,
        confidences=confidences,
        counts=tuple(tuple(int(c) for c in row) for row in counts.tolist()),
        tokens_scored=n,
        p_value=math.exp(log_p),
        log10_p_value=log_p / math.log(10.0),
        corrections=corrections,
    )
    detection = result_from_counts(
        green=green,
        scored=n,
        gamma=1 / r,
        log_p=log_p,
        alpha=alpha,
        config=config,
        flags=flags_for(scored.tokens_total, scored.positions, is_green),
        payload=decoding,
    )
    return replace(decoding, detection=detection)


def detect_payload(
    token_ids: Any,
    config: WatermarkConfig,
    key: WatermarkKey,
    payload: int,
    *,
    prompt_length: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> DetectionResult:
    """Exact test that the text carries this specific ``payload`` (no multiple-testing cost)."""
    settings = _settings(config)
    symbols = np.asarray(payload_symbols(payload, settings), dtype=np.int64)
    scored, colours, slot = _colours_and_slots(token_ids, config, key, prompt_length)
    is_green = colours == symbols[slot]
    green = int(np.count_nonzero(is_green))
    n = int(is_green.shape[0])
    r = settings.num_colours
    return result_from_counts(
        green=green,
        scored=n,
        gamma=1 / r,
        log_p=log_binom_sf(green, n, 1 / r),
        alpha=alpha,
        config=config,
        flags=flags_for(scored.tokens_total, scored.positions, is_green),
    )
