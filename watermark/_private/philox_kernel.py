"""The vLLM-Gumbel detector's per-token work in one compiled pass (numba, optional).

For every token of every text: the context words (``-1`` before the text's start), the
Philox4x32-10 context absorption and token block of :mod:`watermark._private.philox`, the
first-occurrence test of vLLM's context deduplication (an open-addressing table per text whose
entries are compared on the context ids themselves, so nothing can collide) and vLLM's word ->
uniform map. It hands back the scored rows and their uniforms; the score sums, green counts
and flags are then one short NumPy tail shared with the NumPy path
(:func:`watermark.vllm_gumbel.detect_many` without this kernel), so both give the same bits
(``tests/watermark/test_vllm_gumbel_kernel.py``).

The NumPy path spends ~60 whole-array operations per Philox pair plus a sort for the
deduplication; here a token costs two 10-round blocks in registers and one table probe.
numba is optional (the ``cpu-kernel`` extra); without it, or with
``TIERGATE_GUMBEL_KERNEL=numpy``, the detector uses NumPy. The kernel is compiled for one
explicit signature on first use and cached on disk by numba; it runs with the GIL released.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from watermark._private.philox import CONTEXT_DOMAIN, TOKEN_DOMAIN

__all__ = ["gumbel_kernel"]

_lock = threading.Lock()
_loaded = False
_kernel: Callable[..., int] | None = None


def _compile() -> Callable[..., int] | None:
    if os.environ.get("TIERGATE_GUMBEL_KERNEL", "").lower() == "numpy":
        return None
    try:
        import numba
        import numpy as np
    except ImportError:
        return None

    u64 = np.uint64
    m0, m1 = u64(0xD2511F53), u64(0xCD9E8D57)
    w0, w1 = u64(0x9E3779B9), u64(0xBB67AE85)
    low32, s8, s32 = u64(0xFFFFFFFF), u64(8), u64(32)
    golden = u64(0x9E3779B97F4A7C15)
    context_domain, token_domain = u64(CONTEXT_DOMAIN), u64(TOKEN_DOMAIN)
    denominator = float(2**24 + 1)
    t = numba.types
    signature = t.int64(
        t.Array(t.int64, 1, "C"),  # ids, all texts concatenated
        t.Array(t.int64, 1, "C"),  # starts (texts + 1)
        t.int64,  # context width
        t.uint64,  # key
        t.boolean,  # deduplicate contexts
        t.Array(t.int64, 1, "C"),  # out: the scored rows, in order
        t.Array(t.float32, 1, "C"),  # out: their uniforms
    )

    @numba.njit(inline="always")  # type: ignore[misc]
    def one_round(
        c0: Any, c1: Any, c2: Any, c3: Any, k0: Any, k1: Any
    ) -> tuple[Any, Any, Any, Any]:
        # Words are uint64 holding 32 bits; every product is exact in 64 bits.
        p0 = c0 * m0
        p1 = c2 * m1
        return (p1 >> s32) ^ c1 ^ k0, p1 & low32, (p0 >> s32) ^ c3 ^ k1, p0 & low32

    @numba.njit(inline="always")  # type: ignore[misc]
    def philox10(c0: Any, c1: Any, c2: Any, c3: Any, k0: Any, k1: Any) -> tuple[Any, Any, Any, Any]:
        # Written out (no loop), so the loops over tokens that call it are innermost loops
        # LLVM can vectorize.
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        c0, c1, c2, c3 = one_round(c0, c1, c2, c3, k0, k1)
        k0, k1 = (k0 + w0) & low32, (k1 + w1) & low32
        return one_round(c0, c1, c2, c3, k0, k1)

    @numba.njit(signature, nogil=True, cache=True, boundscheck=False)  # type: ignore[misc]
    def score_texts(
        ids: Any,
        starts: Any,
        width: Any,
        key: Any,
        dedup: Any,
        picked: Any,
        uniforms: Any,
    ) -> int:
        k0, k1 = key & low32, key >> s32
        texts = starts.shape[0] - 1
        longest = 0
        for i in range(texts):
            longest = max(longest, starts[i + 1] - starts[i])
        bits = 1
        while (1 << bits) < 2 * longest:
            bits += 1
        table = np.empty(1 << bits if dedup else 1, dtype=np.int64)
        # Per-text scratch: the context words (width of -1 padding first), the four state
        # words and the uniforms. Branch-free loops over them, which LLVM vectorizes.
        words = np.empty(longest + width + 3, dtype=np.uint32)
        states = np.empty((4, longest), dtype=np.uint32)
        scratch = np.empty(longest, dtype=np.float32)
        scored = 0
        for i in range(texts):
            start, n = starts[i], starts[i + 1] - starts[i]
            words[:width] = np.uint32(0xFFFFFFFF)
            for j in range(n):
                words[width + j] = np.uint32(ids[start + j] & 0xFFFFFFFF)
            if width <= 4:
                # One block: the loop over tokens is innermost (vectorizable).
                d1 = u64(0xFFFFFFFE) if width < 2 else u64(0)
                d2 = u64(0xFFFFFFFD) if width < 3 else u64(0)
                d3 = u64(0xFFFFFFFC) if width < 4 else u64(0)
                e1 = u64(0) if width < 2 else low32
                e2 = u64(0) if width < 3 else low32
                e3 = u64(0) if width < 4 else low32
                for j in range(n):
                    # Words past the end of the context are 0xFFFFFFFF - i: the masks pick
                    # the context word or that constant without a branch (the reads stay
                    # inside the scratch, which has 3 spare words).
                    s0, s1, s2, s3 = philox10(
                        context_domain ^ u64(words[j]),
                        u64(width) ^ ((u64(words[j + 1]) & e1) | d1),
                        (u64(words[j + 2]) & e2) | d2,
                        (u64(words[j + 3]) & e3) | d3,
                        k0,
                        k1,
                    )
                    states[0, j] = np.uint32(s0)
                    states[1, j] = np.uint32(s1)
                    states[2, j] = np.uint32(s2)
                    states[3, j] = np.uint32(s3)
            else:
                for j in range(n):
                    s0, s1, s2, s3 = context_domain, u64(width), u64(0), u64(0)
                    for offset in range(0, width, 4):
                        # Words past the end of the context are 0xFFFFFFFF - i.
                        b0 = u64(words[j + offset])
                        b1 = u64(words[j + offset + 1]) if offset + 1 < width else u64(0xFFFFFFFE)
                        b2 = u64(words[j + offset + 2]) if offset + 2 < width else u64(0xFFFFFFFD)
                        b3 = u64(words[j + offset + 3]) if offset + 3 < width else u64(0xFFFFFFFC)
                        s0, s1, s2, s3 = philox10(
                            s0 ^ b0, s1 ^ b1, s2 ^ b2, s3 ^ b3, k0 ^ u64(offset), k1
                        )
                    states[0, j] = np.uint32(s0)
                    states[1, j] = np.uint32(s1)
                    states[2, j] = np.uint32(s2)
                    states[3, j] = np.uint32(s3)
            for j in range(n):
                tok = u64(words[width + j])
                o0, o1, o2, o3 = philox10(
                    tok >> u64(2),
                    u64(states[0, j]),
                    u64(states[1, j]),
                    u64(states[2, j]),
                    u64(states[3, j]) ^ k0,
                    k1 ^ token_domain,
                )
                lane = tok & u64(3)
                w = o0 if lane == 0 else o1 if lane == 1 else o2 if lane == 2 else o3
                scratch[j] = np.float32((float(w >> s8) + 1.0) / denominator)
            if not dedup:
                for j in range(n):
                    picked[scored + j] = start + j
                    uniforms[scored + j] = scratch[j]
                scored += n
                continue
            tbits = 1
            while (1 << tbits) < 2 * n:
                tbits += 1
            mask = u64((1 << tbits) - 1)
            table[: (1 << tbits)] = -1
            for j in range(n):
                # Open addressing on the state words; entries compare the context ids, so
                # a hash collision only costs a probe.
                slot = ((u64(states[0, j]) << s32) | u64(states[1, j])) * golden
                slot >>= u64(64 - tbits)
                while True:
                    other = table[slot]
                    if other < 0:
                        table[slot] = j
                        picked[scored] = start + j
                        uniforms[scored] = scratch[j]
                        scored += 1
                        break
                    same = True
                    for c in range(width):
                        if words[j + c] != words[other + c]:
                            same = False
                            break
                    if same:
                        break
                    slot = (slot + u64(1)) & mask
        return scored

    kernel: Callable[..., int] = score_texts
    return kernel


def gumbel_kernel() -> Callable[..., int] | None:
    """The compiled kernel, or None when numba is missing or disabled.

    Called as ``kernel(ids, starts, width, key, dedup, picked, uniforms)``: text ``i`` is
    ``ids[starts[i]:starts[i+1]]`` (int64, ids in ``0 .. 2**31 - 1``); it writes the rows it
    scores (all, or each context's first occurrence) to ``picked`` in order, their uniforms to
    ``uniforms``, and returns how many. The sums are left to NumPy, as in the NumPy path:
    NumPy's vectorized ``log1p`` and the C library's differ in the last bit for ~7% of inputs.
    """
    global _loaded, _kernel
    if not _loaded:
        with _lock:
            if not _loaded:
                _kernel = _compile()
                _loaded = True
    return _kernel
