"""Text folding for list matching, with a map from every folded character back to the original.

Folding makes obfuscated and differently encoded spellings of a term look alike: compatibility
decomposition (NFKD, so NFC, NFKC and full-width forms fold the same), dropping combining
marks and invisible format characters (accents, soft hyphens, zero-width joiners), casefolding,
a few leetspeak substitutions, and runs of three or more equal letters collapsed to one. Every
folded character remembers the half-open range of original characters it came from, so a match
in the folded text becomes a span into the text the caller holds (the layer redacts by span).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["FoldedText", "fold", "fold_term", "is_word_char"]

# Substitutions that obfuscated profanity uses; digits that do not stand for letters are kept.
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_ASCII_RUN = re.compile(r"(.)\1\1")
# One entry per distinct character seen; the alphabet of real text is small, so this stays
# bounded in practice, and a hard cap keeps adversarial input from growing it without limit.
_CACHE: dict[str, str] = {}
_CACHE_MAX = 65536


def _fold_char(char: str) -> str:
    folded = _CACHE.get(char)
    if folded is None:
        parts = []
        for piece in unicodedata.normalize("NFKD", char):
            if unicodedata.combining(piece) or unicodedata.category(piece) == "Cf":
                continue
            parts.append(piece)
        # Casefolding can itself produce combining marks ("İ" -> "i" + dot above).
        lowered = unicodedata.normalize("NFKD", "".join(parts).casefold())
        folded = "".join(p for p in lowered if not unicodedata.combining(p)).translate(_LEET)
        if len(_CACHE) < _CACHE_MAX:
            _CACHE[char] = folded
    return folded


def is_word_char(char: str) -> bool:
    """Whether a folded character belongs to a word (a word boundary is anything else)."""
    return char.isalnum()


@dataclass(frozen=True, slots=True)
class FoldedText:
    """Folded text; ``starts[i]:ends[i]`` is where folded character ``i`` came from
    (both ``None`` when folding kept every character in place)."""

    text: str
    starts: list[int] | None
    ends: list[int] | None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the folded range ``[start, end)`` (``end > start``)."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def _collapse(chars: list[str], starts: list[int], ends: list[int]) -> FoldedText:
    out_c: list[str] = []
    out_s: list[int] = []
    out_e: list[int] = []
    i = 0
    n = len(chars)
    while i < n:
        j = i + 1
        while j < n and chars[j] == chars[i]:
            j += 1
        # Runs of three or more ("fuuuck") become one character covering the whole run;
        # doubled letters are ordinary spelling and stay.
        keep = 1 if j - i >= 3 else j - i
        for k in range(keep):
            out_c.append(chars[i])
            out_s.append(starts[i + k])
            out_e.append(ends[j - 1] if keep == 1 else ends[i + k])
        i = j
    return FoldedText("".join(out_c), out_s, out_e)


def fold(text: str) -> FoldedText:
    """Fold ``text`` for matching (see the module docstring)."""
    if text.isascii():
        # ASCII lowercasing equals casefolding and keeps every character in place.
        folded = text.lower().translate(_LEET)
        if _ASCII_RUN.search(folded) is None:
            return FoldedText(folded, None, None)
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, char in enumerate(text):
        for piece in _fold_char(char):
            chars.append(piece)
            starts.append(index)
            ends.append(index + 1)
    return _collapse(chars, starts, ends)


def fold_term(term: str) -> str:
    """Fold a list term exactly as :func:`fold` folds text."""
    return fold(term).text
