"""Text folding for list matching, with a map from every folded character back to the original.

Folding makes obfuscated and differently encoded spellings of a term look alike: compatibility
decomposition (NFKD, so NFC, NFKC and full-width forms fold the same), dropping combining
marks and invisible format characters (accents, soft hyphens, zero-width joiners), casefolding,
a few leetspeak substitutions ("!" only before a word character), and runs of three or more
equal letters collapsed to one. Every folded character remembers the half-open range of
original characters it came from, so a match in the folded text becomes a span into the text
the caller holds (the layer redacts by span).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

__all__ = ["LEET_CHARS", "FoldedText", "fold", "fold_term", "is_word_char"]

# Substitutions that obfuscated profanity uses; digits that do not stand for letters are kept.
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
# "!" standing for "i" inside a word ("b!tch", "k!k3") or opening one ("!mbecile"): the one
# leetspeak letter that is punctuation, so only where a word character follows it.
_BANG = re.compile(r"!(?=[^\W_])")
# The characters folding reads as letters: a word written with one is respelled on purpose.
LEET_CHARS = frozenset(chr(code) for code in _LEET) | {"!"}
# Three or more of the same letter (not punctuation: "..." and "---" are ordinary).
_RUN = re.compile(r"([^\W\d_])\1{2,}")
# One entry per distinct character seen; the alphabet of real text is small, so this stays
# bounded in practice, and a hard cap keeps adversarial input from growing it without limit.
_CACHE: dict[str, str] = {}
_CACHE_MAX = 65536


def _fold_char(char: str) -> str:
    folded = _CACHE.get(char)
    if folded is None:
        # Casefold before and after decomposing: either can produce what the other undoes
        # ("İ" -> "i" + dot above; U+0345 -> Greek iota; "℡" -> "TEL").
        decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())
        folded = "".join(
            piece
            for piece in decomposed.casefold()
            if not unicodedata.combining(piece) and unicodedata.category(piece) != "Cf"
        ).translate(_LEET)
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


def _collapse(folded: FoldedText) -> FoldedText:
    """Runs of three or more equal letters ("fuuuck") become one folded character covering
    the whole run; doubled letters are ordinary spelling and stay."""
    runs = list(_RUN.finditer(folded.text))
    if not runs:
        return folded
    size = len(folded.text)
    starts = folded.starts if folded.starts is not None else list(range(size))
    ends = folded.ends if folded.ends is not None else list(range(1, size + 1))
    text: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    at = 0
    for run in runs:
        first, stop = run.span()
        text.append(folded.text[at : first + 1])
        new_starts.extend(starts[at : first + 1])
        new_ends.extend(ends[at:first])
        new_ends.append(ends[stop - 1])
        at = stop
    text.append(folded.text[at:])
    new_starts.extend(starts[at:])
    new_ends.extend(ends[at:])
    return FoldedText("".join(text), new_starts, new_ends)


def _bang(text: str) -> str:
    return _BANG.sub("i", text) if "!" in text else text


def fold(text: str) -> FoldedText:
    """Fold ``text`` for matching (see the module docstring)."""
    if text.isascii():
        # ASCII lowercasing equals casefolding and keeps every character in place.
        return _collapse(FoldedText(_bang(text.lower().translate(_LEET)), None, None))
    pieces = [_CACHE.get(char) or _fold_char(char) for char in text]
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    joined = _bang("".join(pieces))
    if len(joined) == len(text) and (lengths.size == 0 or lengths.max() == 1):
        return _collapse(FoldedText(joined, None, None))
    # Some characters vanished (accents, format characters) or expanded (ligatures, "ß").
    starts = np.repeat(np.arange(len(text), dtype=np.int64), lengths)
    return _collapse(FoldedText(joined, starts.tolist(), (starts + 1).tolist()))


def fold_term(term: str) -> str:
    """Fold a list term exactly as :func:`fold` folds text."""
    return fold(term).text
