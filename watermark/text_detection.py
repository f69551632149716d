"""Detection from text that does not fail on tokenization: score every candidate
re-tokenization (:func:`watermark.tokenization.candidate_tokenizations`), keep the best, and
correct its p-value for the candidates tried (Bonferroni), so trying several readings of the
text never makes a false positive likelier than ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from watermark.config import WatermarkConfig
from watermark.detector import DEFAULT_ALPHA, DetectionResult, detect, encode_text
from watermark.errors import InsufficientTextError
from watermark.keys import WatermarkKey
from watermark.tokenization import (
    PLAIN,
    CandidateTokenization,
    TextTrust,
    assess_text,
    candidate_tokenizations,
)

__all__ = ["TextDetection", "TextReading", "detect_text_robust", "read_text"]


@dataclass(frozen=True)
class TextReading:
    """The candidate tokenizations of one text (plain first) and how far to trust the plain."""

    candidates: tuple[CandidateTokenization, ...]
    trust: TextTrust

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.candidates)


def read_text(text: str, tokenizer: Any, config: WatermarkConfig) -> TextReading:
    """Check the tokenizer against ``config`` (digest, vocab size), then read ``text`` every
    candidate way."""
    ids, offsets = encode_text(text, tokenizer, config)
    plain = CandidateTokenization(PLAIN, tuple(ids), offsets)
    candidates = candidate_tokenizations(tokenizer, text, plain=plain)
    return TextReading(tuple(candidates), assess_text(tokenizer, text, candidates))


@dataclass(frozen=True)
class TextDetection:
    """The best candidate's result, its p-value corrected for ``len(candidates)``."""

    result: DetectionResult
    tokenization: str
    candidates: tuple[str, ...]
    raw_log10_p_value: float
    trust: TextTrust

    def to_dict(self) -> dict[str, Any]:
        return {
            "scored_with": self.tokenization,
            "candidates": list(self.candidates),
            "corrected_for_candidates": len(self.candidates),
            "raw_log10_p_value": self.raw_log10_p_value,
            "trust": self.trust.to_dict(),
        }


def detect_text_robust(
    text: str,
    tokenizer: Any,
    config: WatermarkConfig,
    key: WatermarkKey,
    *,
    prompt_length: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> TextDetection:
    """:func:`watermark.detector.detect_text` over every candidate tokenization.

    ``prompt_length`` counts tokens of each candidate. The returned result's ``p_value``,
    ``log10_p_value`` and ``watermarked`` are corrected for the candidates; its ``offsets``
    are the winning candidate's.
    """
    reading = read_text(text, tokenizer, config)
    best: tuple[CandidateTokenization, DetectionResult] | None = None
    for candidate in reading.candidates:
        try:
            found = detect(
                list(candidate.ids), config, key, prompt_length=prompt_length, alpha=alpha
            )
        except InsufficientTextError:
            continue
        if best is None or found.log10_p_value < best[1].log10_p_value:
            best = (candidate, found)
    if best is None:
        raise InsufficientTextError("no tokenization of the text has tokens to score")
    candidate, found = best
    log10_p = min(0.0, found.log10_p_value + math.log10(len(reading.candidates)))
    corrected = replace(
        found,
        p_value=10.0**log10_p,
        log10_p_value=log10_p,
        watermarked=log10_p <= math.log10(found.alpha),
        offsets=candidate.offsets,
    )
    return TextDetection(
        corrected, candidate.name, reading.names, found.log10_p_value, reading.trust
    )
