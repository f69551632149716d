"""Multilingual word and phrase lists: the ``wordlist`` check.

The lists (English, French, German, Spanish, Russian, Kabyle) are curated from several
published lists into categories and shipped as package data (``safety/lexicons/wordlists``;
sources, licenses and the curation in ``safety/lexicons/SOURCE.md``). Each language is one
Aho-Corasick automaton over folded terms (:mod:`safety.checks._fold`: NFKD, casefold,
accents, leetspeak, stretched letters), so a scan is one pass over the text per language
whatever the list size. A term matches a whole
word, optionally followed by one of its language's inflection suffixes; a term written with a
trailing ``*`` is a root and matches at the start of a word (Russian prefixes are listed as
separate roots), one written ``*term*`` matches inside a word (compounds: "assfucker"). A
root's finding spans the whole word it is in. Findings carry spans into the original text.
A term written ``=term`` is a *literal row* (:mod:`safety.checks._literal`): a respelling
("n1g3r") whose folded form is an ordinary word, matched only as written.

A second stage (:mod:`safety.checks._fuzzy`) then looks at the words the automaton left alone
and flags respellings, further inflections and compounds of listed words that are not ordinary
words (a per-language allow-list derived from Debian's spelling dictionaries and shipped beside
the list as ``<lang>.fuzzy.tsv``); a language without that file has no second stage.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import ahocorasick

from safety.checks._endings import STEM_ENDINGS
from safety.checks._fold import FoldedText, fold, fold_term, is_word_char
from safety.checks._fuzzy import FuzzyData, FuzzyMatcher
from safety.checks._literal import LITERAL_MARK, LiteralTerms
from safety.errors import CheckFailedError, CheckUnavailableError
from safety.findings import HAZARD_CATEGORIES, Finding, ScanContext

__all__ = ["LANGUAGES", "WordListCheck", "load_fuzzy", "load_wordlist"]

LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es", "ru", "kab")
"""The languages (ISO 639 codes, as the ``langid`` check names them) that have a list."""

# Inflections a whole-word term may carry ("bitch" -> "bitches", "branleur" -> "branleurs");
# the first is the plural, the only one a term shorter than five letters takes.
_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "en": ("s", "es", "ed", "er", "ers", "ing", "in", "y", "ies"),
    "fr": ("s", "e", "es", "x"),
    "de": ("s", "e", "en", "er", "n", "es", "ern"),
    "es": ("s", "es", "a", "as", "o", "os"),
    "ru": (),
    "kab": (),
}
_MAX_TERM_CHARS = 200
# A run of word characters: ``[^\W_]`` is exactly ``str.isalnum`` (:func:`is_word_char`).
_WORD = re.compile(r"[^\W_]+")
# Two words joined by one hyphen, at every word start (a zero-width match, so "a-b-c" gives
# both "a-b" and "b-c").
_HYPHENATED = re.compile(r"(?=(?<![^\W_])([^\W_]+)-([^\W_]+))")
# Below this language probability the text may be mixed: English's list runs too.
_MIN_LANG_SCORE = 0.5
# Latin and Cyrillic vowels (escaped: the Cyrillic ones look like Latin letters).
_VOWELS = frozenset("aeiouy\u0430\u0435\u0438\u043e\u0443\u044b\u044d\u044e\u044f\u0451")


@dataclass(frozen=True, slots=True)
class _Entry:
    category: str
    prefix: bool
    length: int
    infix: bool = False


def load_wordlist(language: str) -> list[tuple[str, str, bool]]:
    """The packaged list of ``language``: ``(category, term, is_root)`` rows.

    A line is ``category<TAB>term``: a trailing ``*`` makes the term a root (``is_root``, the
    ``*`` removed); a leading ``=`` (kept in ``term``) a literal row, matched as written and
    not folded (:mod:`safety.checks._literal`).
    Raises :class:`CheckUnavailableError` when the data file is missing or malformed.
    """
    try:
        raw = (
            resources.files("safety")
            .joinpath("lexicons", "wordlists", f"{language}.tsv")
            .read_text(encoding="utf-8")
        )
    except (OSError, ValueError) as exc:
        raise CheckUnavailableError(f"word list {language!r} cannot be read: {exc}") from exc
    rows: list[tuple[str, str, bool]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        category, sep, term = line.partition("\t")
        if not sep or category not in HAZARD_CATEGORIES or not term.strip():
            raise CheckUnavailableError(f"word list {language!r}, line {number}: malformed")
        root = term.endswith("*")
        rows.append((category, term.rstrip("*").strip() if root else term.strip(), root))
    return rows


def load_fuzzy(language: str) -> FuzzyData | None:
    """The packaged part roots and allow-list of ``language``'s second stage, or ``None`` for
    a language without one (no spelling dictionary to derive its allow-list from).

    Raises :class:`CheckUnavailableError` when the file is present but malformed.
    """
    path = resources.files("safety").joinpath("lexicons", "wordlists", f"{language}.fuzzy.tsv")
    if not path.is_file():
        return None
    try:
        return FuzzyData.parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckUnavailableError(f"fuzzy data {language!r} cannot be read: {exc}") from exc


def fuzzy_words(rows: Iterable[tuple[str, str, bool]]) -> dict[str, str]:
    """The single words (folded) of a list that the second stage compares words with: every
    whole-word term and every root's stem (first category wins)."""
    words: dict[str, str] = {}
    for category, term, _root in rows:
        if term.startswith(LITERAL_MARK):
            continue
        folded = fold_term(term.strip("*"))
        if folded and folded.isalnum():
            words.setdefault(folded, category)
    return words


def fuzzy_suffixes(language: str) -> tuple[tuple[str, ...], bool]:
    """The endings the second stage of ``language`` strips, and whether it compares stems
    with the listed words' stems (languages whose listed words are inflected forms)."""
    endings = STEM_ENDINGS.get(language)
    if endings is not None:
        return endings, True
    return _SUFFIXES[language], False


def fuzzy_matcher(
    language: str, rows: Iterable[tuple[str, str, bool]], data: FuzzyData | None
) -> FuzzyMatcher:
    """The second stage of ``language`` over ``rows``."""
    endings, stems = fuzzy_suffixes(language)
    # A stem language's stage is for its own script (see FuzzyMatcher's ascii_words).
    return FuzzyMatcher(fuzzy_words(rows), endings, data, stems=stems, ascii_words=not stems)


def _masked(term: str) -> list[str]:
    """Spellings with one inner vowel masked by ``*`` ("f*ck", "c*nt"): the commonest
    self-censorship, which folding cannot undo because ``*`` stands for any letter."""
    if " " in term or len(term) > 12:
        return []
    return [term[:i] + "*" + term[i + 1 :] for i in range(1, len(term) - 1) if term[i] in _VOWELS]


def _build(language: str, rows: Iterable[tuple[str, str, bool]]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for category, term, root in rows:
        if term.startswith(LITERAL_MARK):
            continue  # matched as written: _literal_terms
        infix = root and term.startswith("*")
        folded = fold_term(term.lstrip("*") if infix else term)
        if not folded or len(folded) > _MAX_TERM_CHARS:
            continue
        # Short terms take only the plural: "spic" + "ed" is "spiced", "ass" + "y" "assy".
        suffixes = _SUFFIXES[language] if len(folded) >= 5 else _SUFFIXES[language][:1]
        # Phrases are also written hyphenated or closed up ("nig-nog", "wetback").
        spellings = [folded, folded.replace(" ", "-"), folded.replace(" ", "")]
        spellings = list(dict.fromkeys(spellings))
        forms = spellings if root else [w + s for w in spellings for s in ("", *suffixes)]
        for form in [*forms, *_masked(folded)]:
            entries: list[_Entry] = automaton.get(form, [])
            entries.append(_Entry(category, root, len(form), infix))
            automaton.add_word(form, entries)
    automaton.make_automaton()
    return automaton


def _literal_terms(language: str, rows: Iterable[tuple[str, str, bool]]) -> LiteralTerms:
    literal = [(c, t[len(LITERAL_MARK) :]) for c, t, _ in rows if t.startswith(LITERAL_MARK)]
    return LiteralTerms(literal, _SUFFIXES[language])


# A language's matchers: the automaton over folded terms, the literal rows, the second stage.
_Built = tuple[ahocorasick.Automaton, LiteralTerms, FuzzyMatcher | None]


def _built(language: str, rows: list[tuple[str, str, bool]], data: FuzzyData | None) -> _Built:
    """Every matcher of ``language`` over ``rows`` (the second stage only with ``data``)."""
    matcher = fuzzy_matcher(language, rows, data) if data else None
    return _build(language, rows), _literal_terms(language, rows), matcher


class _Words:
    """The word around a position, from one regex pass made on first use: walking to the
    word's edges per match would be quadratic in a long word made of repeated roots."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def _index(self) -> list[int]:
        if self._starts is None:
            spans = [m.span() for m in _WORD.finditer(self._text)]
            self._starts = [a for a, _ in spans]
            self._ends = [b for _, b in spans]
        return self._starts

    def around(self, position: int) -> tuple[int, int]:
        """The ``[start, end)`` of the word holding ``position`` (a word character)."""
        starts = self._index()
        index = bisect.bisect_right(starts, position) - 1
        return starts[index], self._ends[index]

    def all(self) -> list[tuple[int, int]]:
        """Every word's ``[start, end)``."""
        return list(zip(self._index(), self._ends, strict=True))


class WordListCheck:
    """Finds listed words and phrases; one finding (score 1.0) per match, with its span.

    The text's language (``context.language``, from the ``langid`` check) selects its list
    (see :meth:`languages_for`).
    """

    name = "wordlist"
    categories: frozenset[str] = frozenset(HAZARD_CATEGORIES)

    def __init__(self, languages: Sequence[str] = LANGUAGES) -> None:
        unknown = sorted(set(languages) - set(LANGUAGES))
        if unknown:
            raise CheckUnavailableError(f"no packaged word list for {unknown}")
        self._languages = tuple(languages)
        self._automata: dict[str, _Built] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_rows(
        cls,
        rows: Mapping[str, Iterable[tuple[str, str, bool]]],
        fuzzy: Mapping[str, FuzzyData] | None = None,
    ) -> WordListCheck:
        """A check over given lists (``language -> (category, term, is_root)`` rows, as
        :func:`load_wordlist` returns) instead of the packaged ones: held-out evaluations.
        ``fuzzy`` gives the second stage's data per language (none: no second stage)."""
        check = cls(languages=tuple(rows))
        for language, language_rows in rows.items():
            language_rows = list(language_rows)
            check._automata[language] = _built(language, language_rows, (fuzzy or {}).get(language))
        return check

    def _automaton(self, language: str) -> _Built:
        built = self._automata.get(language)
        if built is None:
            with self._lock:
                built = self._automata.get(language)
                if built is None:
                    built = _built(language, load_wordlist(language), load_fuzzy(language))
                    self._automata[language] = built
        return built

    def languages_for(self, context: ScanContext) -> tuple[str, ...]:
        """The lists a scan in ``context`` uses: the text's language's list (with English's
        when the identification is unsure: English is what other languages mix in), or every
        list for a text in no listed language or in none identified."""
        language = context.language
        if language not in self._languages:
            return self._languages
        unsure = context.language_score is not None and context.language_score < _MIN_LANG_SCORE
        if unsure and language != "en" and "en" in self._languages:
            return (language, "en")
        return (language,)

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        try:
            return self._scan(text, context)
        except CheckUnavailableError:
            raise
        except Exception as exc:  # a check's failure is the policy's to handle, typed
            raise CheckFailedError(f"wordlist check failed: {exc}") from exc

    def _scan(self, text: str, context: ScanContext) -> list[Finding]:
        folded = fold(text)
        haystack = folded.text
        size = len(haystack)
        words = _Words(haystack)
        found: dict[tuple[int, int, str], Finding] = {}
        for language in self.languages_for(context):
            automaton, literal, matcher = self._automaton(language)
            for end_index, entries in automaton.iter(haystack):
                end = end_index + 1
                for entry in entries:
                    start = end - entry.length
                    if entry.infix:
                        # An infix root ("*fuck*": "assfucker") flags the word it is part of.
                        start = words.around(start)[0]
                    elif start > 0 and is_word_char(haystack[start - 1]):
                        continue
                    stop = end
                    if entry.prefix:
                        # A root covers the whole word it starts, so redaction removes it all.
                        stop = words.around(end - 1)[1]
                    elif end < size and is_word_char(haystack[end]):
                        continue
                    span = folded.span(start, stop)
                    key = (span[0], span[1], entry.category)
                    if key not in found:
                        found[key] = Finding(
                            check=self.name,
                            category=entry.category,
                            score=1.0,
                            span=span,
                            language=language,
                        )
            for start, stop, category in literal.find(text):
                # Spans into ``text`` already: literal rows are matched on it, not folded.
                found.setdefault(
                    (start, stop, category),
                    Finding(
                        check=self.name,
                        category=category,
                        score=1.0,
                        span=(start, stop),
                        language=language,
                    ),
                )
            if matcher is not None:
                self._second_stage(matcher, language, folded, words, found)
        return sorted(found.values(), key=lambda f: (f.span or (0, 0), f.category))

    def _second_stage(
        self,
        matcher: FuzzyMatcher,
        language: str,
        folded: FoldedText,
        words: _Words,
        found: dict[tuple[int, int, str], Finding],
    ) -> None:
        """Respellings, inflections and compounds (:mod:`safety.checks._fuzzy`) of the words
        no finding covers yet; a finding spans the whole word."""
        text = folded.text
        # One C-level pass and one lookup per distinct word (cached per word): the Python loop
        # over word positions runs only when a word hits.
        hits = {w for w in set(_WORD.findall(text)) if matcher.category(w) is not None}
        candidates: list[tuple[int, int, str]] = []
        if hits:
            for start, stop in words.all():
                category = matcher.category(text[start:stop])
                if category is not None:
                    candidates.append((start, stop, category))
        if "-" in text:
            for pair in _HYPHENATED.finditer(text):
                category = matcher.closed_up(pair.group(1), pair.group(2))
                if category is not None:
                    candidates.append((pair.start(1), pair.end(2), category))
        flagged = [(key[0], key[1]) for key in found]
        for start, stop, category in candidates:
            span = folded.span(start, stop)
            if not any(a < span[1] and b > span[0] for a, b in flagged):
                flagged.append(span)
                found[(span[0], span[1], category)] = Finding(
                    check=self.name, category=category, score=1.0, span=span, language=language
                )
