"""Shared first stage of detection and decoding: validate ids, compute PRF words, dedupe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from watermark._private.np_prf import I64, U32, U64, candidate_words, context_words, tables_for
from watermark.config import WatermarkConfig
from watermark.errors import InsufficientTextError, InvalidTokensError, WatermarkKeyError
from watermark.keys import WatermarkKey

MAX_TOKENS = 50_000_000


@dataclass(frozen=True)
class Scored:
    """PRF words of the scored positions of one token sequence."""

    tokens_total: int
    positions: I64  # index into the token sequence of each scored token
    x: U64  # context word of each scored token
    words: U32  # 32-bit PRF word of each scored token


def as_token_array(token_ids: Any, vocab_size: int) -> I64:
    """Validate token ids (sequence or array of non-negative ints below ``vocab_size``)."""
    if not isinstance(token_ids, np.ndarray) and hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()  # torch tensors and the like, without importing torch
    if isinstance(token_ids, np.ndarray):
        array = token_ids
    else:
        try:
            items = list(token_ids)
        except TypeError:
            raise InvalidTokensError("token ids must be a sequence of integers") from None
        if any(isinstance(t, bool) or not isinstance(t, int | np.integer) for t in items):
            raise InvalidTokensError("token ids must be integers")
        if len(items) > MAX_TOKENS:
            raise InvalidTokensError(f"more than {MAX_TOKENS} token ids")
        try:
            array = np.asarray(items, dtype=np.int64)
        except OverflowError:
            raise InvalidTokensError("token id out of range") from None
    if array.ndim != 1:
        raise InvalidTokensError(f"token ids must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InvalidTokensError(f"token ids must be integers, got dtype {array.dtype}")
    if array.size > MAX_TOKENS:
        raise InvalidTokensError(f"more than {MAX_TOKENS} token ids")
    array = array.astype(np.int64, copy=False)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0:
            raise InvalidTokensError(f"negative token id {low}")
        if high >= vocab_size:
            raise InvalidTokensError(f"token id {high} is not below the vocab size {vocab_size}")
    return array


def check_key(config: WatermarkConfig, key: WatermarkKey) -> None:
    if not isinstance(key, WatermarkKey):
        raise WatermarkKeyError("key must be a WatermarkKey")
    if key.key_id != config.key_id:
        raise WatermarkKeyError(
            f"key {key.key_id} does not match the config's key id {config.key_id}"
        )


def score_positions(
    token_ids: Any, config: WatermarkConfig, key: WatermarkKey, *, prompt_length: int = 0
) -> Scored:
    """Words of every token that has a full context, is past the prompt and is not a repeat.

    Each unique (context, token) pair is kept once, at its first occurrence: repeats carry no
    new evidence and would inflate false positives on templated text.
    """
    check_key(config, key)
    ids = as_token_array(token_ids, config.vocab_size)
    if isinstance(prompt_length, bool) or not isinstance(prompt_length, int) or prompt_length < 0:
        raise InvalidTokensError("prompt_length must be a non-negative integer")
    h = config.context_width
    n = int(ids.shape[0])
    if n == 0:
        raise InsufficientTextError("no tokens to score")
    first = max(h, prompt_length)
    if n <= first:
        raise InsufficientTextError(
            f"{n} tokens leave none to score (context width {h}, prompt length {prompt_length})"
        )
    tables = tables_for(key.key64, config.vocab_size, h)
    x_all = context_words(ids, tables, h)[first - h :]
    candidates = ids[first:]
    pair = x_all ^ tables.t64[candidates]
    _, keep = np.unique(pair, return_index=True)
    keep.sort()
    x = x_all[keep]
    words = candidate_words(x, candidates[keep], tables, self_seeded=config.self_seeded)
    return Scored(tokens_total=n, positions=keep.astype(np.int64) + first, x=x, words=words)


def flags_for(tokens_total: int, positions: I64, green: npt.NDArray[np.bool_]) -> Any:
    """Per-token flags: 1 green, 0 red, -1 not scored (no context, prompt, or a repeat)."""
    flags = np.full(tokens_total, -1, dtype=np.int8)
    flags[positions] = green.astype(np.int8)
    flags.setflags(write=False)
    return flags
