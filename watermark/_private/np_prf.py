"""NumPy implementation of the tg-kgw-v1 PRF: cached per-key tables and vectorized words."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from watermark.prf import GOLDEN, MUL1, MUL2, SALT

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]

_MASK64 = (1 << 64) - 1
_CACHE_SIZE = 8


def mix64(z: U64) -> U64:
    """SplitMix64 finalizer on an array (uint64 arithmetic wraps, which is what we want)."""
    z = z ^ (z >> np.uint64(30))
    z *= np.uint64(MUL1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(MUL2)
    z ^= z >> np.uint64(31)
    return z


def splitmix_array(state: int, indices: U64) -> U64:
    """``splitmix(state, i)`` for every i in ``indices``."""
    z = indices * np.uint64(GOLDEN)
    z += np.uint64(state & _MASK64)
    return mix64(z)


@dataclass(frozen=True)
class PrfTables:
    """Per-(key, vocab, context width) tables: built once, read by every call."""

    t64: U64
    t32: U32
    ctx: U64  # shape (h, vocab): row j-1 is W_j
    ctx1_x: U64 | None  # h == 1 only: X for each possible previous token


_tables: OrderedDict[tuple[int, int, int], PrfTables] = OrderedDict()
_lock = threading.Lock()


def tables_for(key64: int, vocab_size: int, context_width: int) -> PrfTables:
    """The (LRU-cached) tables of one key, vocabulary size and context width."""
    cache_key = (key64, vocab_size, context_width)
    with _lock:
        found = _tables.get(cache_key)
        if found is not None:
            _tables.move_to_end(cache_key)
            return found
    ids = np.arange(1, vocab_size + 1, dtype=np.uint64)
    t64 = splitmix_array(key64, ids)
    t32 = (t64 >> np.uint64(32)).astype(np.uint32)
    ctx = np.empty((context_width, vocab_size), dtype=np.uint64)
    for j in range(1, context_width + 1):
        ctx[j - 1] = splitmix_array(key64 ^ ((j * SALT) & _MASK64), ids)
    ctx1_x = mix64(ctx[0].copy()) if context_width == 1 else None
    for array in (t64, t32, ctx):
        array.setflags(write=False)
    built = PrfTables(t64=t64, t32=t32, ctx=ctx, ctx1_x=ctx1_x)
    with _lock:
        _tables[cache_key] = built
        while len(_tables) > _CACHE_SIZE:
            _tables.popitem(last=False)
    return built


def context_words(ids: I64, tables: PrfTables, context_width: int) -> U64:
    """X for every position i >= h of ``ids`` (result has ``len(ids) - h`` entries)."""
    n = ids.shape[0] - context_width
    if tables.ctx1_x is not None:
        return tables.ctx1_x[ids[:n]]
    total = np.zeros(n, dtype=np.uint64)
    for j in range(1, context_width + 1):
        total += tables.ctx[j - 1][ids[context_width - j : context_width - j + n]]
    return mix64(total)


def candidate_words(x: U64, candidates: I64, tables: PrfTables, *, self_seeded: bool) -> U32:
    """The 32-bit PRF word of each candidate under its own context word."""
    if self_seeded:
        return (mix64(x ^ tables.t64[candidates]) >> np.uint64(32)).astype(np.uint32)
    a = (x & np.uint64(0xFFFFFFFF)).astype(np.uint32) | np.uint32(1)
    b = (x >> np.uint64(32)).astype(np.uint32)
    w = a * tables.t32[candidates]
    w += b
    return w


def slots(x: U64, num_slots: int) -> I64:
    """Payload slot of each context word."""
    s = mix64(x + np.uint64(GOLDEN))
    return ((s >> np.uint64(32)) % np.uint64(num_slots)).astype(np.int64)
