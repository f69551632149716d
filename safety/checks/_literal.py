"""Literal rows of the word lists: respellings matched as written, not folded.

A list may publish a slur respelled with digits or symbols whose folded form is an ordinary
word: "n1g3r" folds to "niger" (a country), "r3t@rd" to "retard" (a verb). The folded form
cannot be listed, but nobody writes "n1g3r" for the country: the respelling itself is the
signal. Such a term is shipped as a *literal row* (``category<TAB>=term``) and matches a word
of the text only when that word, NFKC-normalised and lowercased but not leet-folded, is the
term (or the term with one of its language's inflection suffixes) — so "N1G3R" matches and
"Niger" does not.

Only words holding a digit or one of the symbols folding reads as letters are looked up (one
regex search for those characters, then one set lookup per word holding any), so text without
them costs one failed search.
A digit or symbol that NFKC does not make a decimal digit or ``@ $ !`` (superscripts, circled
digits) does not make a word a candidate: such a respelling is missed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from safety.checks._fold import LEET_CHARS

__all__ = ["LITERAL_MARK", "LiteralTerms", "literal_form"]

LITERAL_MARK = "="
"""Leads a literal row's term in ``<lang>.tsv`` (no folded term starts with it)."""

# The symbols folding reads as letters, with their full-width and small forms (NFKC maps them
# to the ASCII ones); digits of every script are ``\d``.
_SYMBOLS = "@$!\uff20\uff04\uff01\ufe6b\ufe69\ufe57\ufe15"
_CHAR = rf"(?:[^\W_]|[{_SYMBOLS}])"
# What makes a word a candidate; a word is a run of word characters and those symbols.
_MARK = re.compile(rf"[\d{_SYMBOLS}]")
_WORD_REST = re.compile(rf"{_CHAR}*")
_WHOLE = re.compile(rf"{_CHAR}+")
# "!" reads as a letter only before a word character: a word's trailing ones are punctuation.
_TRAILING_BANGS = "!\uff01\ufe57\ufe15"


def _key(word: str) -> str:
    return unicodedata.normalize("NFKC", word.rstrip(_TRAILING_BANGS)).lower()


def literal_form(term: str) -> str | None:
    """The form a literal row of ``term`` matches (NFKC, lowercased), or ``None`` when the
    term cannot be one: not a single word, or spelled without a character folding maps."""
    key = _key(term.strip())
    if not key or not _WHOLE.fullmatch(key) or not LEET_CHARS.intersection(key):
        return None
    return key


class LiteralTerms:
    """The literal rows of one language, matched as written (see the module docstring)."""

    def __init__(self, rows: Iterable[tuple[str, str]], suffixes: Sequence[str]) -> None:
        """``rows`` are ``(category, term)`` (without the mark); a term of five characters or
        more also matches with any of ``suffixes``, a shorter one with the first (the plural),
        as folded terms do. The first category given for a form wins."""
        self._forms: dict[str, str] = {}
        for category, term in rows:
            form = literal_form(term)
            if form is None:
                continue
            endings = suffixes if len(form) >= 5 else suffixes[:1]
            for ending in ("", *endings):
                self._forms.setdefault(form + ending, category)

    def __len__(self) -> int:
        return len(self._forms)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, category)`` of every word of ``text`` that is a literal row's form;
        the span indexes ``text`` and leaves out trailing exclamation marks."""
        if not self._forms:
            return []
        hits: list[tuple[int, int, str]] = []
        end = 0  # where the last candidate word ended: no walk crosses it, so this is linear
        for mark in _MARK.finditer(text):
            start = mark.start()
            if start < end:
                continue  # in the word just looked up
            while start > end and (text[start - 1].isalnum() or text[start - 1] in _SYMBOLS):
                start -= 1
            rest = _WORD_REST.match(text, mark.start())  # always matches: the mark is one
            end = rest.end() if rest is not None else mark.end()
            word = text[start:end].rstrip(_TRAILING_BANGS)
            category = self._forms.get(_key(word))
            if category is not None:
                hits.append((start, start + len(word), category))
        return hits
