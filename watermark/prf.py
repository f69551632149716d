"""The keyed integer PRF of scheme ``tg-kgw-v1``: the normative pure-Python reference.

Every backend (NumPy detector, torch processor on CPU or CUDA) must produce the same bits as
these functions; ``watermark/vectors/tg-kgw-v1.json`` pins them. All arithmetic is modulo 2**64
(or 2**32 for the final word) so that wrapping int64 (torch) and uint64 (NumPy) agree.

Definition (``sm(x, i) = mix64(x + i * GOLDEN)`` is the i-th SplitMix64 output from state x)::

    key64    = LE64(sha256(b"tg-kgw-v1\\x00" + secret)[:8])
    T64[v]   = sm(key64, v + 1)                      per-candidate word (64 bit)
    T32[v]   = T64[v] >> 32
    W_j[c]   = sm(key64 ^ (j * SALT), c + 1)         j = 1..h, distance back from the candidate
    X        = mix64(sum_j W_j[ctx[-j]] mod 2**64)   context word
    A        = (X & 0xFFFFFFFF) | 1 ;  B = X >> 32
    w        = (A * T32[v] + B) mod 2**32            left-seeded (default)
    w        = mix64(X ^ T64[v]) >> 32               self-seeded: candidate enters the mix
    favoured(symbol m) <=> (w - m * 2**(32 - b)) mod 2**32 < floor(gamma * 2**32)
    slot     = (sm(X, 1) >> 32) mod L                payload position for this context

Zero-bit green is ``favoured(0)``. The context word is a sum of per-position table lookups so
that the processor needs one gather per context position and no per-step table rebuild.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from fractions import Fraction

__all__ = [
    "GOLDEN",
    "SALT",
    "SCHEME",
    "colour",
    "context_word",
    "is_favoured",
    "key_word",
    "mix64",
    "prf_word",
    "slot_of",
    "splitmix",
    "threshold32",
]

SCHEME = "tg-kgw-v1"
MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
GOLDEN = 0x9E3779B97F4A7C15
SALT = 0xD1B54A32D192ED03
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB


def mix64(z: int) -> int:
    """SplitMix64 finalizer (Steele, Lea, Flood 2014), a bijection on 64-bit words."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return z ^ (z >> 31)


def splitmix(state: int, index: int) -> int:
    """The ``index``-th SplitMix64 output from ``state``."""
    return mix64((state + index * GOLDEN) & MASK64)


def key_word(secret: bytes) -> int:
    """The 64-bit key of the PRF derived from the secret key material."""
    digest = hashlib.sha256(SCHEME.encode() + b"\x00" + secret).digest()
    return int.from_bytes(digest[:8], "little")


def context_word(key64: int, context: Sequence[int]) -> int:
    """The context word X of the ``len(context)`` tokens preceding a candidate (oldest first)."""
    total = 0
    for distance, token in enumerate(reversed(context), start=1):
        total += splitmix(key64 ^ ((distance * SALT) & MASK64), token + 1)
    return mix64(total & MASK64)


def prf_word(key64: int, context: Sequence[int], candidate: int, *, self_seeded: bool) -> int:
    """The 32-bit PRF word w of ``candidate`` after ``context``."""
    x = context_word(key64, context)
    t64 = splitmix(key64, candidate + 1)
    if self_seeded:
        return mix64(x ^ t64) >> 32
    a = (x & MASK32) | 1
    b = x >> 32
    return (a * (t64 >> 32) + b) & MASK32


def threshold32(gamma: float) -> int:
    """``floor(gamma * 2**32)``, computed exactly from the float."""
    return int(Fraction(gamma) * (1 << 32))


def is_favoured(word: int, gamma: float, symbol: int = 0, bits_per_symbol: int = 0) -> bool:
    """Whether PRF word ``word`` falls in the list of ``symbol`` (0 = the zero-bit green list)."""
    offset = (symbol << (32 - bits_per_symbol)) if bits_per_symbol else 0
    return ((word - offset) & MASK32) < threshold32(gamma)


def colour(word: int, bits_per_symbol: int) -> int:
    """Which of the ``2**bits_per_symbol`` colour lists the word falls into."""
    return word >> (32 - bits_per_symbol)


def slot_of(x: int, num_slots: int) -> int:
    """Which payload symbol a context word X carries."""
    return (splitmix(x, 1) >> 32) % num_slots
