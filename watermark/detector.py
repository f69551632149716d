"""Zero-bit detection: exact binomial test over unique (context, token) pairs, and a window scan."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from watermark._private.binom import log_binom_sf, z_score
from watermark._private.scoring import flags_for, score_positions
from watermark.config import WatermarkConfig, tokenizer_digest, tokenizer_vocab_size
from watermark.errors import (
    InsufficientTextError,
    TokenizerMismatchError,
    VocabMismatchError,
    WatermarkConfigError,
)
from watermark.keys import WatermarkKey
from watermark.prf import threshold32

__all__ = [
    "DEFAULT_ALPHA",
    "GREEN",
    "RED",
    "UNSCORED",
    "DetectionResult",
    "WindowScan",
    "detect",
    "detect_text",
    "encode_text",
    "scan",
    "scan_flags",
    "tokenize",
]

DEFAULT_ALPHA = 1e-6
GREEN, RED, UNSCORED = 1, 0, -1
_LOG10 = math.log(10.0)


@dataclass(frozen=True)
class DetectionResult:
    """Verdict and statistics of one detection; ``flags[i]`` colours token i for highlighting."""

    watermarked: bool
    z_score: float
    p_value: float
    log10_p_value: float
    tokens_total: int
    tokens_scored: int
    green_count: int
    green_fraction: float
    alpha: float
    config: WatermarkConfig
    flags: npt.NDArray[np.int8] = field(repr=False, compare=False)
    offsets: tuple[tuple[int, int], ...] | None = field(default=None, repr=False, compare=False)
    payload: Any = field(default=None, compare=False)

    def to_dict(self, *, include_flags: bool = True) -> dict[str, Any]:
        """JSON-ready form (the key id and parameters come from the config, never the key)."""
        data: dict[str, Any] = {
            "watermarked": self.watermarked,
            "z_score": self.z_score,
            "p_value": self.p_value,
            "log10_p_value": self.log10_p_value,
            "tokens_total": self.tokens_total,
            "tokens_scored": self.tokens_scored,
            "green_count": self.green_count,
            "green_fraction": self.green_fraction,
            "alpha": self.alpha,
            "config": self.config.to_dict(),
        }
        if include_flags:
            data["flags"] = self.flags.tolist()
            if self.offsets is not None:
                data["offsets"] = [list(pair) for pair in self.offsets]
        if self.payload is not None:
            data["payload"] = self.payload.to_dict()
        return data


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise WatermarkConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def result_from_counts(
    *,
    green: int,
    scored: int,
    gamma: float,
    log_p: float,
    alpha: float,
    config: WatermarkConfig,
    flags: npt.NDArray[np.int8],
    payload: Any = None,
) -> DetectionResult:
    return DetectionResult(
        watermarked=log_p <= math.log(alpha),
        z_score=z_score(green, scored, gamma),
        p_value=math.exp(log_p),
        log10_p_value=log_p / _LOG10,
        tokens_total=int(flags.shape[0]),
        tokens_scored=scored,
        green_count=green,
        green_fraction=green / scored if scored else 0.0,
        alpha=alpha,
        config=config,
        flags=flags,
        payload=payload,
    )


def detect(
    token_ids: Any,
    config: WatermarkConfig,
    key: WatermarkKey,
    *,
    prompt_length: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> DetectionResult:
    """Test token ids for the watermark of ``config`` and ``key``.

    ``prompt_length`` leading tokens serve as context only. ``watermarked`` is ``p <= alpha``
    with the exact one-sided binomial p-value. For a payload config the statistic is the
    best-message count, corrected for the number of possible messages (see
    :func:`watermark.payload.decode_payload`).
    """
    alpha = _check_alpha(alpha)
    if config.payload is not None:
        from watermark.payload import decode_payload

        detection = decode_payload(
            token_ids, config, key, prompt_length=prompt_length, alpha=alpha
        ).detection
        assert detection is not None
        return detection
    scored = score_positions(token_ids, config, key, prompt_length=prompt_length)
    green = scored.words < np.uint32(threshold32(config.gamma))
    green_count = int(np.count_nonzero(green))
    n = int(green.shape[0])
    return result_from_counts(
        green=green_count,
        scored=n,
        gamma=config.gamma,
        log_p=log_binom_sf(green_count, n, config.gamma),
        alpha=alpha,
        config=config,
        flags=flags_for(scored.tokens_total, scored.positions, green),
    )


def encode_text(
    text: str, tokenizer: Any, config: WatermarkConfig
) -> tuple[list[int], tuple[tuple[int, int], ...] | None]:
    """Tokenize ``text`` after checking the tokenizer is the one the config was recorded with."""
    if not isinstance(text, str) or not text:
        raise InsufficientTextError("no text to score")
    if (
        config.tokenizer_digest is not None
        and tokenizer_digest(tokenizer) != config.tokenizer_digest
    ):
        raise TokenizerMismatchError(
            "the tokenizer's vocabulary digest differs from the one recorded in the config"
        )
    size = tokenizer_vocab_size(tokenizer)
    if size > config.vocab_size:
        raise VocabMismatchError(
            f"tokenizer has {size} token ids but the config's vocab size is {config.vocab_size}"
        )
    return tokenize(text, tokenizer)


def tokenize(text: str, tokenizer: Any) -> tuple[list[int], tuple[tuple[int, int], ...] | None]:
    """Token ids of ``text`` (no special tokens) and each token's character span when the
    tokenizer can tell (every scheme's detector reads text this way)."""
    if not isinstance(text, str) or not text:
        raise InsufficientTextError("no text to score")
    offsets: tuple[tuple[int, int], ...] | None = None
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        offsets = tuple((int(a), int(b)) for a, b in encoded["offset_mapping"])
    except (NotImplementedError, KeyError, TypeError):
        # Slow tokenizers have no offset mapping; highlight by token index instead.
        ids = list(tokenizer.encode(text, add_special_tokens=False))
    return ids, offsets


def detect_text(
    text: str,
    tokenizer: Any,
    config: WatermarkConfig,
    key: WatermarkKey,
    *,
    prompt_length: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> DetectionResult:
    """:func:`detect` on text; the result's ``offsets`` map each flag to a character span."""
    ids, offsets = encode_text(text, tokenizer, config)
    result = detect(ids, config, key, prompt_length=prompt_length, alpha=alpha)
    if offsets is None:
        return result
    from dataclasses import replace

    return replace(result, offsets=offsets)


@dataclass(frozen=True)
class WindowScan:
    """Best window of a scan; ``adjusted_p_value`` is Bonferroni-corrected over all windows."""

    start: int
    end: int
    tokens_scored: int
    green_count: int
    z_score: float
    p_value: float
    adjusted_p_value: float
    windows: int
    watermarked: bool
    # ln of ``adjusted_p_value``: it stays finite where the p-value underflows to 0.0.
    log_adjusted_p_value: float = 0.0


def scan(
    token_ids: Any,
    config: WatermarkConfig,
    key: WatermarkKey,
    *,
    window: int = 100,
    stride: int = 10,
    alpha: float = DEFAULT_ALPHA,
) -> WindowScan:
    """Find the most strongly watermarked window of ``window`` tokens in longer mixed text."""
    flags = detect(token_ids, config, key, alpha=0.5).flags
    return scan_flags(flags, config.gamma, window=window, stride=stride, alpha=alpha)


def scan_flags(
    flags: Any,
    gamma: float,
    *,
    window: int = 100,
    stride: int = 10,
    alpha: float = DEFAULT_ALPHA,
) -> WindowScan:
    """The window scan over per-token flags (``GREEN``/``RED``/``UNSCORED``) at rate ``gamma``.

    Callers that score flags their own way (a payload's symbol test, whose chance rate is
    ``1 / colours``) scan them with the same statistics as :func:`scan`.
    """
    alpha = _check_alpha(alpha)
    if window < 1 or stride < 1:
        raise WatermarkConfigError("window and stride must be positive")
    if not 0.0 < gamma < 1.0:
        raise WatermarkConfigError("gamma must be in (0, 1)")
    flags = np.asarray(flags)
    n = int(flags.shape[0])
    size = min(window, n)
    starts = np.arange(0, max(1, n - size + 1), stride, dtype=np.int64)
    if starts[-1] != n - size:
        starts = np.append(starts, max(0, n - size))
    green_cum = np.concatenate(([0], np.cumsum(flags == GREEN)))
    scored_cum = np.concatenate(([0], np.cumsum(flags != UNSCORED)))
    greens = green_cum[starts + size] - green_cum[starts]
    scoreds = scored_cum[starts + size] - scored_cum[starts]
    zs = (greens - gamma * scoreds) / np.sqrt(np.maximum(scoreds, 1) * gamma * (1 - gamma))
    best = int(np.argmax(zs))
    green, scored = int(greens[best]), int(scoreds[best])
    log_p = log_binom_sf(green, scored, gamma)
    log_adjusted = min(0.0, log_p + math.log(len(starts)))
    return WindowScan(
        start=int(starts[best]),
        end=int(starts[best]) + size,
        tokens_scored=scored,
        green_count=green,
        z_score=z_score(green, scored, gamma),
        p_value=math.exp(log_p),
        adjusted_p_value=math.exp(log_adjusted),
        windows=len(starts),
        watermarked=log_adjusted <= math.log(alpha),
        log_adjusted_p_value=log_adjusted,
    )
