"""Detector for vLLM's built-in Gumbel-max watermark (``--watermark-config``, Philox PRF).

vLLM (0.32, ``vllm/v1/watermarking/``) samples each token as ``argmax(logits - ln(-ln r_v))``
where ``r_v`` is a keyed Philox4x32-10 uniform of (the previous ``context_width`` generated
tokens, candidate ``v``). Generated text therefore favours tokens whose ``r`` is close to 1.
The test statistic is ``S = sum -ln(1 - r_t)`` over the scored tokens: each term is Exp(1)
under H0 (text not made with this key), so ``S ~ Gamma(n, 1)`` and the p-value is the exact
regularized upper incomplete gamma ``Q(n, S)``.

What is scored follows vLLM's own detector: the context of token ``i`` is tokens
``i-w .. i-1`` of the text, ``-1`` before its start (vLLM's engine builds contexts from the
generated tokens only, so detection needs no prompt); with ``deduplicate_contexts`` (vLLM's
default, and what its engine's ``single_turn`` deduplication samples for) only the first
occurrence of each context is scored, since a repeated context reuses one random vector.

NumPy only, vectorized over every token of every text in one pass (:func:`detect_many`); when
numba is importable (the ``cpu-kernel`` extra) the per-token work runs in a compiled kernel
(:mod:`watermark._private.philox_kernel`) with the same bits, ~5-10x faster.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from watermark._private.gamma import log_gamma_sf
from watermark._private.philox import (
    context_states,
    philox_words,
    token_words,
    uniforms_from_words,
)
from watermark._private.philox_kernel import gumbel_kernel
from watermark.errors import (
    InvalidTokensError,
    UnsupportedSchemeError,
    WatermarkConfigError,
    WatermarkKeyError,
)

__all__ = [
    "DEFAULT_ALPHA",
    "GUMBEL_SCHEME",
    "GumbelConfig",
    "GumbelDetection",
    "GumbelKey",
    "detect",
    "detect_many",
    "load_gumbel_key_file",
    "log_gamma_sf",
    "prf_uniforms",
]

GUMBEL_SCHEME = "vllm-gumbel"
DEFAULT_ALPHA = 1e-6
MAX_CONTEXT_WIDTH = 64
MAX_TOKENS = 1 << 20
GREEN, RED, UNSCORED = 1, 0, -1  # _detect_one writes a bool as GREEN / RED
_LOG10 = math.log(10.0)
_MAX_KEY_FILE_BYTES = 256
_KEY_TEXT = re.compile(r"(?:0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})")


class GumbelKey:
    """vLLM's watermark key: an integer in ``0 .. 2**64 - 1``. Never shown by repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise WatermarkKeyError("a vLLM watermark key is an integer in 0 .. 2**64 - 1")
        self._value = value

    @classmethod
    def from_text(cls, text: str) -> GumbelKey:
        """Decimal (as in ``--watermark-config '{"key": N}'``) or ``0x`` hex; the error never
        quotes the input."""
        stripped = text.strip() if isinstance(text, str) else ""
        if not _KEY_TEXT.fullmatch(stripped):
            raise WatermarkKeyError(
                "a vLLM watermark key is a decimal integer or 0x-prefixed hex, below 2**64"
            )
        return cls(int(stripped, 0) if stripped[:2].lower() == "0x" else int(stripped, 10))

    @property
    def value(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return "GumbelKey(<secret>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GumbelKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash((GumbelKey, self._value))


def load_gumbel_key_file(path: str | Path) -> GumbelKey:
    """Read a key file holding the integer vLLM was configured with (decimal or 0x hex)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise WatermarkKeyError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise WatermarkKeyError(f"key file {path} is larger than {_MAX_KEY_FILE_BYTES} bytes")
    try:
        return GumbelKey.from_text(data.decode("ascii"))
    except UnicodeDecodeError:
        raise WatermarkKeyError(f"key file {path} is not ASCII text") from None


@dataclass(frozen=True)
class GumbelConfig:
    """The public parameters of a vLLM watermark (its ``WatermarkConfig`` less the key)."""

    context_width: int = 4
    deduplicate_contexts: bool = True
    algorithm: str = "gumbel"
    prf: str = "philox"

    def __post_init__(self) -> None:
        width = self.context_width
        if isinstance(width, bool) or not isinstance(width, int):
            raise WatermarkConfigError("context_width must be an integer")
        if not 1 <= width <= MAX_CONTEXT_WIDTH:
            raise WatermarkConfigError(f"context_width must be in 1..{MAX_CONTEXT_WIDTH}")
        if not isinstance(self.deduplicate_contexts, bool):
            raise WatermarkConfigError("deduplicate_contexts must be true or false")
        if self.algorithm != "gumbel":
            raise UnsupportedSchemeError(
                f"vLLM watermark algorithm {self.algorithm!r} is not supported; known: gumbel"
            )
        if self.prf != "philox":
            raise UnsupportedSchemeError(f"vLLM watermark PRF {self.prf!r} is not supported")

    @property
    def scheme(self) -> str:
        return GUMBEL_SCHEME

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": GUMBEL_SCHEME,
            "algorithm": self.algorithm,
            "prf": self.prf,
            "context_width": self.context_width,
            "deduplicate_contexts": self.deduplicate_contexts,
        }


@dataclass(frozen=True)
class GumbelDetection:
    """Verdict and statistics; ``flags[i]`` is GREEN when token i's ``r >= 1/2`` (chance 1/2)."""

    watermarked: bool
    score: float
    z_score: float
    p_value: float
    log10_p_value: float
    tokens_total: int
    tokens_scored: int
    green_count: int
    alpha: float
    config: GumbelConfig
    flags: npt.NDArray[np.int8] = field(repr=False, compare=False)

    @property
    def green_fraction(self) -> float:
        return self.green_count / self.tokens_scored if self.tokens_scored else 0.0

    def to_dict(self, *, include_flags: bool = True) -> dict[str, Any]:
        """JSON-ready form; the key is never part of it."""
        data: dict[str, Any] = {
            "watermarked": self.watermarked,
            "score": self.score,
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
        return data


def prf_uniforms(contexts: Any, token_ids: Any, key: GumbelKey) -> npt.NDArray[np.float32]:
    """vLLM's ``PhiloxPRF(key).uniform`` for rows ``contexts[i]`` (``(n, w)``, -1 = padding)
    and candidates ``token_ids[i]`` (``(n,)``): float32 in ``(0, 1)``, bit for bit."""
    ctx = np.asarray(contexts, dtype=np.int64)
    tok = np.asarray(token_ids, dtype=np.int64)
    if ctx.ndim != 2 or tok.ndim != 1 or ctx.shape[0] != tok.shape[0]:
        raise InvalidTokensError("contexts must be (n, width) and token ids (n,)")
    return uniforms_from_words(philox_words(ctx, tok, key.value))


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise WatermarkConfigError("alpha must be in (0, 1)")
    return float(alpha)


def _list_ids(token_ids: list[Any]) -> npt.NDArray[np.int64] | None:
    """A list of Python ints as int64 through ``struct.pack`` (~4 ns an id, against ~11 for
    ``array.array`` and ~15 for ``np.asarray``: list -> array is the largest part of the
    detector's time on long texts), or None to take the general path: anything but ints (a
    float, a str, a nested list, a too-large int), or a leading bool (so an all-bool list is
    refused as NumPy's bool dtype is)."""
    if token_ids and type(token_ids[0]) is bool:
        return None
    packed = bytearray(8 * len(token_ids))  # writable: the kernel's argument type says so
    try:
        struct.pack_into(f"{len(token_ids)}q", packed, 0, *token_ids)
    except (struct.error, TypeError, OverflowError):
        return None
    return np.frombuffer(packed, dtype=np.int64)


def _as_ids(token_ids: Any) -> npt.NDArray[np.int64]:
    if type(token_ids) is list and len(token_ids) > MAX_TOKENS:
        # Before any conversion: the bound is on what the caller sent.
        raise InvalidTokensError(f"at most {MAX_TOKENS} token ids per text")
    fast = _list_ids(token_ids) if type(token_ids) is list else None
    try:
        ids = np.asarray(token_ids) if fast is None else fast
    except (TypeError, ValueError, OverflowError):
        raise InvalidTokensError("token ids must be a flat sequence of integers") from None
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise InvalidTokensError("token ids must be a flat sequence of integers")
    if ids.size > MAX_TOKENS:
        raise InvalidTokensError(f"at most {MAX_TOKENS} token ids per text")
    # vLLM's ids are int32; the bound also keeps every id's 32 bits apart from the -1 padding.
    # One pass: the OR of all ids has a bit above 30 set (or is negative) iff one is out.
    if ids.size and int(np.bitwise_or.reduce(ids)) & ~0x7FFFFFFF:
        raise InvalidTokensError("token ids must be in 0 .. 2**31 - 1")
    return ids.astype(np.int64, copy=False)


def _contexts(ids: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.int64]:
    padded = np.concatenate((np.full(width, -1, dtype=np.int64), ids))
    return np.lib.stride_tricks.sliding_window_view(padded, width)[: ids.shape[0]]


def _first_occurrences(
    contexts: npt.NDArray[np.int64],
    text_index: npt.NDArray[np.intp],
    states: tuple[npt.NDArray[np.uint32], ...],
) -> npt.NDArray[np.intp]:
    """Rows whose (text, context) pair has not occurred earlier: vLLM's deduplication.

    Rows are grouped by a 64-bit digest (two Philox state words mixed with the text index),
    one sort; then every row is compared in full with its group's first row, so a digest
    collision cannot merge two contexts: it sends the inputs to the exact (slower) grouping.
    """
    digest = (states[0].astype(np.uint64) << np.uint64(32)) | states[1].astype(np.uint64)
    digest ^= text_index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    _, first, inverse = np.unique(digest, return_index=True, return_inverse=True)
    rep = first[inverse.ravel()]
    same = np.array_equal(text_index[rep], text_index)
    if contexts.shape[1] <= 4:
        # One Philox block is a permutation of its counter under a fixed key: equal state
        # words mean equal contexts, so the two words the digest left out settle it.
        same = same and all(np.array_equal(s[rep], s) for s in states[2:])
    else:
        same = same and np.array_equal(contexts[rep], contexts)
    if not same:
        rows = np.concatenate((text_index[:, None], contexts), axis=1)
        rows = np.ascontiguousarray(rows).view(np.dtype((np.void, 8 * rows.shape[1])))
        _, first = np.unique(rows.ravel(), return_index=True)
    return np.sort(first).astype(np.intp)


_Picked = tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]


def _pick_compiled(
    kernel: Any,
    all_ids: list[npt.NDArray[np.int64]],
    lengths: npt.NDArray[np.int64],
    config: GumbelConfig,
    key: GumbelKey,
) -> _Picked:
    """The scored rows and their uniforms, from the numba kernel (same bits as NumPy)."""
    count = len(all_ids)
    ids = np.concatenate(all_ids) if count else np.empty(0, dtype=np.int64)
    starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    picked = np.empty(ids.shape[0], dtype=np.int64)
    uniforms = np.empty(ids.shape[0], dtype=np.float32)
    scored = kernel(
        np.ascontiguousarray(ids, dtype=np.int64),
        starts,
        config.context_width,
        np.uint64(key.value),
        config.deduplicate_contexts,
        picked,
        uniforms,
    )
    return picked[:scored].astype(np.intp, copy=False), uniforms[:scored]


def _pick_numpy(
    all_ids: list[npt.NDArray[np.int64]],
    lengths: npt.NDArray[np.int64],
    config: GumbelConfig,
    key: GumbelKey,
    text_index: npt.NDArray[np.intp],
) -> _Picked:
    """The same as :func:`_pick_compiled` with whole-array NumPy operations."""
    total = int(lengths.sum())
    width = config.context_width
    if total:
        contexts = np.concatenate([_contexts(ids, width) for ids in all_ids])
        targets = np.concatenate(all_ids)
    else:
        contexts = np.empty((0, width), dtype=np.int64)
        targets = np.empty(0, dtype=np.int64)
    states = context_states(contexts, key.value)
    if config.deduplicate_contexts:
        picked = _first_occurrences(contexts, text_index, states)
    else:
        picked = np.arange(total, dtype=np.intp)
    words = token_words(tuple(s[picked] for s in states), targets[picked], key.value)  # type: ignore[arg-type]
    return picked, uniforms_from_words(words)


def detect_many(
    texts: Sequence[Any],
    config: GumbelConfig,
    key: GumbelKey,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> list[GumbelDetection]:
    """:func:`detect` for many token-id sequences, with one PRF evaluation over all of them."""
    alpha = _check_alpha(alpha)
    if not isinstance(config, GumbelConfig) or not isinstance(key, GumbelKey):
        raise WatermarkConfigError("detect needs a GumbelConfig and a GumbelKey")
    all_ids = [_as_ids(t) for t in texts]
    kernel = gumbel_kernel()
    if len(all_ids) == 1 and kernel is not None:
        return [_detect_one(kernel, all_ids[0], config, key, alpha)]
    lengths = np.array([ids.shape[0] for ids in all_ids], dtype=np.int64)
    total = int(lengths.sum())
    text_index = np.repeat(np.arange(len(all_ids), dtype=np.intp), lengths)
    if kernel is not None:
        picked, uniforms = _pick_compiled(kernel, all_ids, lengths, config, key)
    else:
        picked, uniforms = _pick_numpy(all_ids, lengths, config, key, text_index)
    # Shared by both paths, so they agree to the bit (NumPy's vectorized log1p and the C
    # library's, which the kernel would call, differ in the last bit for some inputs).
    # -u is exact in float32 and widens exactly; S = -sum(log1p(-u)).
    logs = np.log1p(np.negative(uniforms), dtype=np.float64)
    green = uniforms >= np.float32(0.5)
    if len(all_ids) == 1:  # one text (detect): no grouping, pairwise sum
        counts = np.array([picked.shape[0]])
        sums = np.array([0.0 - float(np.add.reduce(logs))])
        greens = np.array([np.count_nonzero(green)])
    else:
        owner = text_index[picked]
        counts = np.bincount(owner, minlength=len(all_ids))
        sums = 0.0 - np.bincount(owner, weights=logs, minlength=len(all_ids))
        greens = np.bincount(owner, weights=green, minlength=len(all_ids))
    flags_all = np.full(total, UNSCORED, dtype=np.int8)
    flags_all[picked] = np.where(green, np.int8(GREEN), np.int8(RED))
    starts = np.concatenate(([0], np.cumsum(lengths)))
    out = []
    for i in range(len(all_ids)):
        n = int(counts[i])
        score = float(sums[i])
        log_p = log_gamma_sf(score, n)
        out.append(
            GumbelDetection(
                watermarked=n > 0 and log_p <= math.log(alpha),
                score=score,
                z_score=(score - n) / math.sqrt(n) if n else 0.0,
                p_value=math.exp(log_p),
                log10_p_value=log_p / _LOG10,
                tokens_total=int(lengths[i]),
                tokens_scored=n,
                green_count=int(greens[i]),
                alpha=alpha,
                config=config,
                flags=flags_all[starts[i] : starts[i + 1]],
            )
        )
    return out


def _detect_one(
    kernel: Any, ids: npt.NDArray[np.int64], config: GumbelConfig, key: GumbelKey, alpha: float
) -> GumbelDetection:
    """:func:`detect_many` for one text on the kernel, in a dozen NumPy calls instead of ~30:
    on a few hundred tokens the calls, not the tokens, are the detector's time (the same
    arithmetic as the general path, so the same bits)."""
    total = ids.shape[0]
    picked = np.empty(total, dtype=np.int64)
    uniforms = np.empty(total, dtype=np.float32)
    n = kernel(
        np.ascontiguousarray(ids, dtype=np.int64),
        np.array((0, total), dtype=np.int64),
        config.context_width,
        np.uint64(key.value),
        config.deduplicate_contexts,
        picked,
        uniforms,
    )
    scored = uniforms[:n]
    score = 0.0 - float(np.add.reduce(np.log1p(np.negative(scored), dtype=np.float64)))
    green = scored >= np.float32(0.5)
    flags = np.full(total, UNSCORED, dtype=np.int8)
    flags[picked[:n]] = green  # GREEN is 1, RED 0
    log_p = log_gamma_sf(score, n)
    return GumbelDetection(
        watermarked=n > 0 and log_p <= math.log(alpha),
        score=score,
        z_score=(score - n) / math.sqrt(n) if n else 0.0,
        p_value=math.exp(log_p),
        log10_p_value=log_p / _LOG10,
        tokens_total=total,
        tokens_scored=n,
        green_count=int(np.count_nonzero(green)),
        alpha=alpha,
        config=config,
        flags=flags,
    )


def detect(
    token_ids: Any, config: GumbelConfig, key: GumbelKey, *, alpha: float = DEFAULT_ALPHA
) -> GumbelDetection:
    """Test token ids (the generated text, without the prompt) for vLLM's Gumbel watermark.

    ``watermarked`` is ``p <= alpha`` with the exact Gamma tail p-value.
    """
    return detect_many([token_ids], config, key, alpha=alpha)[0]
