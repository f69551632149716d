"""Philox4x32-10 over NumPy arrays, keyed per (context, token) the way vLLM's watermark does.

Written from the Philox paper (Salmon et al., SC'11, doi:10.1145/2063384.2063405) and the
layout of vLLM's ``philox4x32-10-v1`` watermark PRF (``vllm/v1/watermarking/prfs/philox.py``):
the context is absorbed four 32-bit words at a time into a state that starts at
``(CONTEXT_DOMAIN, width, 0, 0)``; words past the end of the context are ``0xFFFFFFFF - i``; the
block at word offset ``o`` is keyed ``(k0 ^ o, k1)``. The candidate's group ``token >> 2`` and
the first three state words form the final counter, keyed ``(k0 ^ s3, k1 ^ TOKEN_DOMAIN)``, and
output word ``token & 3`` is the candidate's 32 bits. ``tests/watermark/test_vllm_gumbel.py``
pins the bits against vLLM's own outputs (``watermark/vectors/vllm-gumbel-philox.json``).

Words are uint32 arrays (wrapping arithmetic); ``mulhilo`` is one exact uint64 product.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

__all__ = [
    "CONTEXT_DOMAIN",
    "TOKEN_DOMAIN",
    "context_states",
    "philox_words",
    "token_words",
    "uniforms_from_words",
]

U32 = npt.NDArray[np.uint32]

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = 0x9E3779B9
W1 = 0xBB67AE85
CONTEXT_DOMAIN = 0x574D4358  # "WMCX"
TOKEN_DOMAIN = 0x574D544B  # "WMTK"
_ROUNDS = 10
_BIG_ENDIAN = sys.byteorder == "big"


def _philox10(
    c0: U32, c1: U32, c2: U32, c3: U32, k0: U32 | np.uint32, k1: int
) -> tuple[U32, U32, U32, U32]:
    """Ten Philox4x32 rounds over uint32 arrays of one length ``n`` (``k1`` is one word).

    Each ``mulhilo32`` is one exact uint64 product written into a buffer whose uint32 halves
    (little-endian: low, high) are read back as strided views. Two buffer pairs alternate, so
    the views a round hands on stay valid while the next round writes: a round costs two
    multiplies and four in-place xors, and allocates nothing.
    """
    n = c0.shape[0]
    products = [np.empty(n, dtype=np.uint64) for _ in range(4)]
    halves = [p.view(np.uint32) for p in products]
    low_at, high_at = (1, 0) if _BIG_ENDIAN else (0, 1)
    lows = [h[low_at::2] for h in halves]
    highs = [h[high_at::2] for h in halves]
    a = np.array(c0, dtype=np.uint32)  # copies: the caller's arrays are left alone
    b = np.array(c2, dtype=np.uint32)
    key0 = np.array(k0, dtype=np.uint32)
    key1 = np.array(k1 & 0xFFFFFFFF, dtype=np.uint32)
    for r in range(_ROUNDS):
        i = 2 * (r & 1)
        np.multiply(a, M0, out=products[i], dtype=np.uint64, casting="unsafe")
        np.multiply(b, M1, out=products[i + 1], dtype=np.uint64, casting="unsafe")
        np.bitwise_xor(highs[i + 1], c1, out=a)
        a ^= key0
        np.bitwise_xor(highs[i], c3, out=b)
        b ^= key1
        c1, c3 = lows[i + 1], lows[i]
        if r != _ROUNDS - 1:
            key0 += np.uint32(W0)  # uint32 arithmetic wraps, as Philox's key schedule does
            key1 += np.uint32(W1)
    return a, np.ascontiguousarray(c1), b, np.ascontiguousarray(c3)


def context_states(contexts: npt.NDArray[np.int64], key: int) -> tuple[U32, U32, U32, U32]:
    """The four state words after absorbing each row of ``contexts`` (shape ``(n, width)``).

    Negative ids (vLLM's ``-1`` padding before the first generated token) enter as their low
    32 bits, as in vLLM (``-1 -> 0xFFFFFFFF``).
    """
    n, width = contexts.shape
    k0, k1 = key & 0xFFFFFFFF, key >> 32
    words = (contexts & 0xFFFFFFFF).astype(np.uint32)
    s = (
        np.full(n, CONTEXT_DOMAIN, dtype=np.uint32),
        np.full(n, width, dtype=np.uint32),
        np.zeros(n, dtype=np.uint32),
        np.zeros(n, dtype=np.uint32),
    )
    for offset in range(0, width, 4):
        block = [
            words[:, offset + i] if offset + i < width else np.uint32(0xFFFFFFFF - i)
            for i in range(4)
        ]
        s = _philox10(
            s[0] ^ block[0],
            s[1] ^ block[1],
            s[2] ^ block[2],
            s[3] ^ block[3],
            np.uint32(k0 ^ offset),
            k1,
        )
    return s


def token_words(states: tuple[U32, U32, U32, U32], tokens: npt.NDArray[np.int64], key: int) -> U32:
    """The 32-bit PRF word of ``tokens[i]`` after the context whose state is ``states[.][i]``."""
    s0, s1, s2, s3 = states
    t = (tokens & 0xFFFFFFFF).astype(np.uint32)
    k0, k1 = key & 0xFFFFFFFF, key >> 32
    out = _philox10(t >> np.uint32(2), s0, s1, s2, s3 ^ np.uint32(k0), k1 ^ TOKEN_DOMAIN)
    return np.asarray(np.choose(t & np.uint32(3), out), dtype=np.uint32)


def philox_words(contexts: npt.NDArray[np.int64], tokens: npt.NDArray[np.int64], key: int) -> U32:
    """The 32-bit PRF word of ``tokens[i]`` after ``contexts[i]``, under the 64-bit ``key``."""
    return token_words(context_states(contexts, key), tokens, key)


def uniforms_from_words(words: U32) -> npt.NDArray[np.float32]:
    """vLLM's word -> uniform map: the top 24 bits ``m`` give ``float32((m + 1) / (2**24 + 1))``."""
    mantissas = words >> np.uint32(8)
    return ((mantissas.astype(np.float64) + 1.0) / float(2**24 + 1)).astype(np.float32)
