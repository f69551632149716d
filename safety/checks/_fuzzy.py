"""Respellings and compounds of listed words: the ``wordlist`` check's second stage.

The exact stage (an Aho-Corasick automaton over folded terms) finds a listed word however it
is cased, accented or leetspoken, but not one respelled ("fukwhore", "Mothafucc", "cuunt"),
inflected past the language's listed suffixes ("coonies") or made a compound with a root
("assfkcer", "cawksucker"). This stage looks at each word the exact stage left alone and flags
it when it is **not an ordinary word** (an allow-list: the words of the language's Debian
spelling dictionary and of the curation corpora on which these rules fire, derived by
``bench/safety_curation.py``) and one of these rules holds:

1. **inflection**: the word minus one of the language's suffixes (``-ies``, ``-ers``, ...) is a
   listed word; for a language whose listed words are themselves inflected (Russian: noun,
   adjective and verb endings, ``stems=True``), the word's stem equals a listed word's stem
   ("долбоёбами" and "долбоёб", "охуеннее" and "охуенный": ``охуенн``);
2. **skeleton**: its *skeleton* (below) or that of its suffix-less form equals the skeleton of a
   listed word (``faget`` ~ ``faggot``: ``fgt``);
3. **root inside**: its skeleton contains the skeleton of a *part root*, a listed word the
   curation admitted for this because almost no ordinary word's skeleton contains it;
4. **written apart**: it and the next word, joined by a hyphen, close up into a listed word
   of six letters or more ("lady-boy", "she-male"; joined by a space too many ordinary
   phrases close up into a listed word: "turn on", "three way").

The skeleton of a Latin-script word: ``ph`` -> ``f``, ``c``/``q``/``ck`` -> ``k``, ``x`` ->
``ks``, ``z`` -> ``s``, ``er`` -> ``a`` (the spelling of a dropped r), then every vowel after
the first letter dropped (``w`` and ``h`` after a vowel too: "cawk", "fuhk") and repeated
letters collapsed. A Cyrillic word's skeleton only collapses repeated letters (its vowels carry
the inflection). Skeletons shorter than three letters are too unspecific and never used.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import ahocorasick

__all__ = ["FuzzyData", "FuzzyMatcher", "skeleton"]

MIN_SKELETON = 3
"""The shortest skeleton a rule uses: two consonants ("fk", "ng") match too many words."""
MIN_WHOLE = 4
"""The shortest skeleton rule 2 compares: three-letter skeletons are shared by names and rare
words no dictionary lists ("Kysh", "Bowles"), measured on the development split."""
MIN_WORD = 4
"""The shortest word the stage looks at (three-letter words are the exact stage's)."""
MIN_STEM = 4
"""The shortest stem a stem-to-stem comparison uses (Russian): shorter stems ("сук", "муд") are
shared with ordinary words the allow-list cannot all name."""
MIN_CLOSED = 6
"""The shortest listed word found written apart (shorter ones split into ordinary words)."""
_LATIN_VOWELS = frozenset("aeiouy")
_RESPELL = (("ph", "f"), ("ck", "k"), ("q", "k"), ("c", "k"), ("x", "ks"), ("z", "s"))
_ER = re.compile(r"er")
_REPEATS = re.compile(r"(.)\1+")
_CACHE_MAX = 200_000


def skeleton(word: str) -> str:
    """The skeleton of one folded word (see the module docstring)."""
    if not word:
        return ""
    if not word.isascii():
        return _REPEATS.sub(r"\1", word)
    for old, new in _RESPELL:
        word = word.replace(old, new)
    word = _ER.sub("a", word)
    kept = [word[0]]
    after_vowel = word[0] in _LATIN_VOWELS
    for char in word[1:]:
        vowel = char in _LATIN_VOWELS
        if not vowel and not (after_vowel and char in "wh"):
            kept.append(char)
        after_vowel = vowel or (after_vowel and char in "wh")
    return _REPEATS.sub(r"\1", "".join(kept))


@dataclass(frozen=True, slots=True)
class FuzzyData:
    """What the curation derives for one language: the part roots (skeleton -> category) and
    the allow-list (folded ordinary words on which a rule would fire)."""

    parts: Mapping[str, str]
    allow: frozenset[str]
    blocked: frozenset[str] = frozenset()
    """Skeletons rule 2 never uses: those of identity terms ("lezbian" is listed, but a
    respelling of "lesbian" must not be flagged for sharing its skeleton)."""

    @staticmethod
    def parse(raw: str) -> FuzzyData:
        """Read the packaged form: ``part<TAB>skeleton<TAB>category``, ``allow<TAB>word`` and
        ``block<TAB>skeleton`` lines (``#`` comments). Raises :class:`ValueError` on a
        malformed line."""
        parts: dict[str, str] = {}
        allow: set[str] = set()
        blocked: set[str] = set()
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if fields[0] == "part" and len(fields) == 3 and fields[1] and fields[2]:
                parts[fields[1]] = fields[2]
            elif fields[0] == "allow" and len(fields) == 2 and fields[1]:
                allow.add(fields[1])
            elif fields[0] == "block" and len(fields) == 2 and fields[1]:
                blocked.add(fields[1])
            else:
                raise ValueError(f"line {number}: malformed")
        return FuzzyData(parts, frozenset(allow), frozenset(blocked))

    def format(self) -> str:
        """The packaged form (sorted, so a rebuild is byte-identical)."""
        lines = [f"part\t{s}\t{c}\n" for s, c in sorted(self.parts.items())]
        lines += [f"allow\t{w}\n" for w in sorted(self.allow)]
        lines += [f"block\t{k}\n" for k in sorted(self.blocked)]
        return "".join(lines)


class FuzzyMatcher:
    """The rules of the module docstring over one language's listed words."""

    def __init__(
        self,
        words: Mapping[str, str],
        suffixes: Iterable[str],
        data: FuzzyData | None,
        *,
        stems: bool = False,
        ascii_words: bool = True,
    ) -> None:
        """``words``: folded single listed words -> category; ``suffixes``: the language's
        inflections; ``data``: part roots and allow-list (``None``: no part roots, no
        allow-list; only for building the allow-list itself); ``stems``: compare stems with
        the listed words' stems too (rule 1, for languages whose listed words are inflected);
        ``ascii_words``: look at words written in ASCII at all (Russian: no, since its lists'
        transliterations compared by English skeletons flag words of other languages, and
        its endings and allow-list are Cyrillic)."""
        self._ascii_words = ascii_words
        self._words = dict(words)
        self._suffixes = tuple(sorted(set(suffixes), key=len, reverse=True))
        # Endings looked up by length (a set probe per length, not one endswith per ending).
        self._suffix_set = frozenset(self._suffixes)
        self._suffix_lengths = tuple(sorted({len(x) for x in self._suffixes}, reverse=True))
        blocked = data.blocked if data is not None else frozenset()
        # A listed word's stems: the word minus each ending it has (never an identity stem).
        self._stems: dict[str, str] = {}
        if stems:
            for word, category in self._words.items():
                for stem in self._stems_of(word):
                    if stem not in blocked:
                        self._stems.setdefault(stem, category)
        self._skeletons: dict[str, str] = {}
        for word, category in self._words.items():
            key = skeleton(word)
            if len(key) >= MIN_WHOLE and (data is None or key not in data.blocked):
                self._skeletons.setdefault(key, category)
        self._allow = data.allow if data is not None else frozenset()
        self._parts: ahocorasick.Automaton | None = None
        if data is not None and data.parts:
            self._parts = ahocorasick.Automaton()
            for key, category in data.parts.items():
                self._parts.add_word(key, category)
            self._parts.make_automaton()
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def category(self, word: str) -> str | None:
        """The category a folded word is flagged with, or ``None``."""
        if len(word) < MIN_WORD or word in self._allow or word.isdigit():
            return None
        if not self._ascii_words and word.isascii():
            return None
        cached = self._cache.get(word, "")
        if cached != "":
            return cached
        found = self._match(word)
        if len(self._cache) < _CACHE_MAX:
            with self._lock:
                self._cache[word] = found
        return found

    def closed_up(self, first: str, second: str) -> str | None:
        """The category of two adjacent words written apart that close up into a listed
        word ("wet back", "lady-boy"), or ``None``."""
        closed = first + second
        if len(closed) < MIN_CLOSED or closed in self._allow:
            return None
        if not self._ascii_words and closed.isascii():
            return None
        return self._words.get(closed)

    def rule(self, word: str) -> str | None:
        """Which rule flags ``word`` (``inflection``, ``skeleton``, ``part``), ignoring the
        allow-list: what the curation uses to find the ordinary words to allow."""
        if not self._ascii_words and word.isascii():
            return None
        return self._match(word, explain=True)

    def _without_endings(self, word: str, shortest: int) -> list[str]:
        """``word`` minus each of its endings, longest ending first, leaving >= ``shortest``."""
        return [
            word[:-n]
            for n in self._suffix_lengths
            if len(word) - n >= shortest and word[-n:] in self._suffix_set
        ]

    def _stems_of(self, word: str) -> list[str]:
        return self._without_endings(word, MIN_STEM)

    def _match(self, word: str, explain: bool = False) -> str | None:
        forms = [word, *self._without_endings(word, 3)]
        for form in forms[1:]:
            category = self._words.get(form)
            if category is not None:
                return "inflection" if explain else category
        if self._stems:
            for form in [word, *self._stems_of(word)]:
                category = self._stems.get(form)
                if category is not None:
                    return "inflection" if explain else category
        for form in forms:
            category = self._skeletons.get(skeleton(form))
            if category is not None:
                return "skeleton" if explain else category
        if self._parts is not None:
            for _end, category in self._parts.iter(skeleton(word)):
                return "part" if explain else str(category)
        return None
