"""The ``wordlist`` check: languages, robust matching, spans into the original text."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety import CheckUnavailableError, ScanContext, load_check
from safety.checks.wordlist import LANGUAGES, WordListCheck, load_wordlist
from safety.findings import HAZARD_CATEGORIES

CHECK = WordListCheck()
NONE = ScanContext()


def matched(text: str, context: ScanContext = NONE) -> list[tuple[str, str]]:
    return [
        (f.category, text[f.span[0] : f.span[1]])
        for f in CHECK.scan(text, context)
        if f.span is not None
    ]


def test_registry_builds_it() -> None:
    check = load_check("wordlist")
    assert isinstance(check, WordListCheck)
    assert check.name == "wordlist"


@pytest.mark.parametrize(
    ("language", "text", "term"),
    [
        ("en", "well, what the fuck was that", "fuck"),
        ("fr", "Espèce de connard, va !", "connard"),
        ("de", "So ein Arschloch, wirklich.", "Arschloch"),
        ("es", "No seas gilipollas, hombre.", "gilipollas"),
        ("ru", "Иди нахуй, пожалуйста.", "нахуй"),
        ("kab", "Ur qqaṛ ara: abbuc", "abbuc"),
    ],
)
def test_every_language_has_a_list_that_matches(language: str, text: str, term: str) -> None:
    assert language in LANGUAGES
    found = matched(text, ScanContext(language=language, language_score=0.99))
    assert ("profanity", term) in found or any(t == term for _, t in found)


def test_lists_are_well_formed_and_categorised() -> None:
    for language in LANGUAGES:
        rows = load_wordlist(language)
        assert rows
        assert {category for category, _, _ in rows} <= set(HAZARD_CATEGORIES)


def test_slurs_are_hate_not_profanity() -> None:
    assert ("hate", "faggot") in matched("you faggot")


def test_words_inside_other_words_do_not_match() -> None:
    assert matched("an assistant in class passed the cockpit exam in Scunthorpe") == []


def test_inflections_and_roots_match() -> None:
    found = [t for _, t in matched("bitches, fuckface, motherfucking shithead")]
    assert found == ["bitches", "fuckface", "motherfucking", "shithead"]


def test_obfuscations_match_with_original_spans() -> None:
    text = "\uff26\uff35\uff23\uff2b, sh1t, f*ck, fuuuuck, f\u200buck, ENCULÉ"
    # Without a language every list runs, so German "f*ck" (fick) matches too: one span each.
    found = list(dict.fromkeys(t for _, t in matched(text)))
    assert found == ["\uff26\uff35\uff23\uff2b", "sh1t", "f*ck", "fuuuuck", "f\u200buck", "ENCULÉ"]


def test_phrases_match_across_spaces_hyphens_or_closed_up() -> None:
    assert ("profanity", "piece of shit") in matched("you piece of shit")
    assert ("hate", "nig-nog") in matched("a nig-nog")
    assert ("hate", "nignog") in matched("a nignog")


def test_the_language_selects_its_list() -> None:
    # "con" is French; in an English text it is an ordinary word.
    assert matched("the pros and con of it", ScanContext(language="en", language_score=0.9)) == []
    assert matched("quel con", ScanContext(language="fr", language_score=0.9)) != []


def test_an_unsure_language_adds_english_and_an_unlisted_one_runs_every_list() -> None:
    # Regression: short Spanish texts identified as "es" at 0.3 ran every list, so French
    # "con" flagged Spanish "con" (with).
    assert CHECK.languages_for(ScanContext(language="es", language_score=0.3)) == ("es", "en")
    assert CHECK.languages_for(ScanContext(language="en", language_score=0.1)) == ("en",)
    assert CHECK.languages_for(ScanContext(language="it", language_score=0.99)) == LANGUAGES
    assert CHECK.languages_for(ScanContext()) == LANGUAGES


def test_unknown_language_is_refused() -> None:
    with pytest.raises(CheckUnavailableError):
        WordListCheck(languages=("xx",))


@settings(max_examples=200)
@given(st.text(), st.sampled_from(["fuck", "connard", "Arschloch", "хуй", "abbuc"]), st.text())
def test_spans_always_index_the_original(prefix: str, term: str, suffix: str) -> None:
    text = f"{prefix} {term} {suffix}"
    for finding in CHECK.scan(text, NONE):
        assert finding.span is not None
        start, end = finding.span
        assert 0 <= start < end <= len(text)
    assert any(t == term for _, t in matched(text)) or not unicodedata.is_normalized("NFC", text)


@given(st.text())
def test_arbitrary_unicode_never_crashes(text: str) -> None:
    for finding in CHECK.scan(text, NONE):
        assert finding.span is not None
        assert 0 <= finding.span[0] < finding.span[1] <= len(text)


@given(st.sampled_from(["Fuck", "CONNARD", "arschLOCH", "ХУЙ", "Maricón"]))
def test_case_and_nfkc_do_not_change_what_matches(term: str) -> None:
    text = f"so {term} there"
    forms = {text, text.upper(), text.casefold(), unicodedata.normalize("NFKD", text)}
    counts = {len(CHECK.scan(form, NONE)) for form in forms}
    assert counts == {len(CHECK.scan(text, NONE))}
    assert counts != {0}


def test_infix_roots_flag_the_whole_compound() -> None:
    assert matched("what an assfucker", ScanContext(language="en", language_score=0.9)) == [
        ("profanity", "assfucker")
    ]
    assert matched("pure horseshit.", ScanContext(language="en", language_score=0.9)) == [
        ("profanity", "horseshit")
    ]


def test_regression_accent_folding_does_not_hit_ordinary_words() -> None:
    # Folding drops accents, so "coño" as a root matched "conocimiento", "möse" matched
    # "Moses" and "cumming" matched "Cummings" in the clean corpora.
    assert matched("el conocimiento", ScanContext(language="es", language_score=0.9)) == []
    assert matched("und Moses sprach", ScanContext(language="de", language_score=0.9)) == []
    assert matched("e. e. Cummings wrote", ScanContext(language="en", language_score=0.9)) == []
    # Short terms take only the plural suffix ("spic" + "ed").
    assert matched("spiced rum", ScanContext(language="en", language_score=0.9)) == []


def test_a_missing_list_is_unavailable() -> None:
    with pytest.raises(CheckUnavailableError):
        load_wordlist("xx")


def test_a_malformed_list_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def joinpath(self, *parts: str) -> Broken:
            return self

        def read_text(self, encoding: str) -> str:
            return "not_a_category\tword\n"

    monkeypatch.setattr("safety.checks.wordlist.resources.files", lambda _: Broken())
    with pytest.raises(CheckUnavailableError, match="malformed"):
        load_wordlist("en")


def test_a_long_word_of_repeated_roots_is_linear() -> None:
    # Regression: walking to the word's edges per root match was quadratic in the word.
    text = "fuck" * 50_000
    (finding,) = CHECK.scan(text, ScanContext(language="en", language_score=0.9))
    assert finding.span == (0, len(text))
