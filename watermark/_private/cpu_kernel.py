"""A fused CPU kernel for the left-seeded bias: one pass over B x V, compiled with numba.

torch's eager ops need four passes over the B x V logits for this (multiply, add, an
int32 -> float compare that torch does not vectorize well, and the biased add), each with a
few microseconds of dispatch, plus ~20 tiny torch ops per step to derive each row's words
(context mix, payload slot and symbol): on 2 cores that is 0.04-0.07x of a sampling step and
~0.2 ms a step inside generate(). One compiled function does the per-row words and reads
each logit once: measured 3.5 us at batch 1 / vocab 32000 (torch: 25 us) and 0.55 ms
at batch 32 / vocab 128256 (torch: 2.6 ms); see docs/benchmarks.md.

numba is optional: without it (or with ``TIERGATE_WATERMARK_KERNEL=torch``) the processor
uses the torch ops, which produce the same bits. The kernel is compiled for one explicit
signature when first needed and cached on disk by numba, so a process pays the compile
(about a second) once per machine, not per call. It runs serially with the GIL released:
parallel loops cost more in thread wake-ups than they save at these sizes, and the
gateway's batcher threads already run generations side by side.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from watermark.prf import GOLDEN, MUL1, MUL2

__all__ = ["fused_bias_kernel"]

_lock = threading.Lock()
_loaded = False
_kernel: Callable[..., int] | None = None


def _compile() -> Callable[..., int] | None:
    if os.environ.get("TIERGATE_WATERMARK_KERNEL", "").lower() == "torch":
        return None
    try:
        import numba
        import numpy as np
    except ImportError:
        return None

    u64 = np.uint64
    golden, mul1, mul2 = u64(GOLDEN), u64(MUL1), u64(MUL2)
    low32, sign32 = u64(0xFFFFFFFF), u64(1 << 31)
    s27, s30, s31, s32 = u64(27), u64(30), u64(31), u64(32)
    t = numba.types
    # The PRF tables are shared and read-only (watermark._private.np_prf): say so, or numba
    # refuses them.
    signature = t.int64(
        t.Array(t.float32, 2, "C"),
        t.Array(t.int32, 1, "C", readonly=True),
        t.Array(t.int64, 2, "C"),
        t.Array(t.uint64, 2, "C", readonly=True),
        t.Array(t.int64, 2, "C"),
        t.boolean,
        t.int64,
        t.int32,
        t.float32,
    )

    @numba.njit(signature, nogil=True, cache=True, boundscheck=False)  # type: ignore[misc]
    def bias_left(
        scores: Any,
        t32: Any,
        context: Any,
        ctx: Any,
        symbols: Any,
        with_payload: Any,
        symbol_shift: Any,
        limit: Any,
        delta: Any,
    ) -> int:
        rows, vocab = scores.shape
        width = ctx.shape[0]
        slots = symbols.shape[1]
        for r in range(rows):  # every id checked before any logit changes
            for j in range(width):
                if context[r, j] < 0 or context[r, j] >= vocab:
                    return r
        for r in range(rows):
            # X = mix64(sum_j W_j[ctx[-j]]) (watermark.prf.context_word), uint64 wrapping.
            total = u64(0)
            for j in range(1, width + 1):
                total += ctx[j - 1, context[r, width - j]]
            z = (total ^ (total >> s30)) * mul1
            z = (z ^ (z >> s27)) * mul2
            x = z ^ (z >> s31)
            offset = u64(0)
            if with_payload:
                # slot = (splitmix(X, 1) >> 32) mod L; the row's symbol there sets the list.
                z = x + golden
                z = (z ^ (z >> s30)) * mul1
                z = (z ^ (z >> s27)) * mul2
                z = z ^ (z >> s31)
                slot = numba.int64((z >> s32) % u64(slots))
                symbol = symbols[r if symbols.shape[0] > 1 else 0, slot]
                offset = u64(symbol) << u64(symbol_shift)
            # The signed form of (A*T + B - offset) mod 2**32 < threshold: see favoured_left.
            a_r = numba.int32((x & low32) | u64(1))
            b_r = numba.int32(((x >> s32) + sign32 - offset) & low32)
            row = scores[r]
            for v in range(vocab):
                # numba widens int32 * int32 to int64; the cast keeps the low 32 bits, which
                # is exactly torch's and NumPy's wrapping int32 arithmetic.
                if numba.int32(a_r * t32[v] + b_r) < limit:
                    row[v] += delta
        return -1

    kernel: Callable[..., int] = bias_left
    return kernel


def fused_bias_kernel() -> Callable[..., int] | None:
    """The compiled kernel, or None when numba is missing or disabled.

    Called as ``kernel(scores, t32, context, ctx, symbols, with_payload, symbol_shift, limit,
    delta)`` with ``context`` the last h token ids of every row (oldest first), ``ctx`` the
    (h, V) context tables, ``symbols`` one row of payload symbols per batch row (or one for
    all); it adds ``delta`` in place to every favoured logit and returns -1, or, changing
    nothing, the index of the first row holding a token id outside the vocabulary.
    """
    global _loaded, _kernel
    if not _loaded:
        with _lock:
            if not _loaded:
                _kernel = _compile()
                _loaded = True
    return _kernel
