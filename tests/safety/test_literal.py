"""Literal rows: respellings whose folded form is an ordinary word, matched as written."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety.checks._fold import LEET_CHARS
from safety.checks._literal import LiteralTerms, literal_form
from safety.checks.wordlist import WordListCheck, load_fuzzy, load_wordlist
from safety.findings import ScanContext

NONE = ScanContext()
PACKAGED = WordListCheck(languages=("en",))
ROWS = load_wordlist("en")
FUZZY = load_fuzzy("en")
assert FUZZY is not None
WITHOUT_LITERALS = WordListCheck.from_rows(
    {"en": [r for r in ROWS if not r[1].startswith("=")]}, {"en": FUZZY}
)
WITH_LITERALS = WordListCheck.from_rows({"en": ROWS}, {"en": FUZZY})


def matched(check: WordListCheck, text: str) -> list[tuple[str, str]]:
    return [
        (f.category, text[f.span[0] : f.span[1]])
        for f in check.scan(text, NONE)
        if f.span is not None
    ]


@pytest.mark.parametrize(
    ("text", "word", "category"),
    [
        ("you n1g3r", "n1g3r", "hate"),
        ("you are a r3t@rd", "r3t@rd", "profanity"),
        ("YOU N1G3R!", "N1G3R", "hate"),
        ("such r3t@rds.", "r3t@rds", "profanity"),
        ("full width \uff4e\uff11\uff47\uff13\uff52 too", "\uff4e\uff11\uff47\uff13\uff52", "hate"),
    ],
)
def test_respelled_slurs_that_fold_to_ordinary_words_are_flagged(
    text: str, word: str, category: str
) -> None:
    assert (category, word) in matched(PACKAGED, text)


@pytest.mark.parametrize(
    "text", ["Niger borders Nigeria.", "retard the timing", "a fagot of sticks", "NIGER"]
)
def test_ordinary_words_are_left_to_the_folded_rules(text: str) -> None:
    assert matched(WITH_LITERALS, text) == matched(WITHOUT_LITERALS, text)
    assert not any(word.lower() in {"niger", "retard"} for _, word in matched(PACKAGED, text))


def test_the_packaged_list_ships_literal_rows_that_each_hold_a_leet_character() -> None:
    literal = [term[1:] for _, term, _ in ROWS if term.startswith("=")]
    assert "n1g3r" in literal
    assert all(literal_form(term) is not None for term in literal)


def test_a_literal_form_is_one_word_with_a_leet_character() -> None:
    assert literal_form("N1G3R") == "n1g3r"
    assert literal_form("niger") is None
    assert literal_form("a55 hole") is None
    assert literal_form("sh!t!") == "sh!t"


def test_literal_terms_take_the_plural_only_when_short() -> None:
    terms = LiteralTerms([("hate", "n1g3r"), ("profanity", "d4mn")], ("s", "ed"))
    found = terms.find("n1g3rs n1g3red d4mns d4mned")
    assert [h[2] for h in found] == ["hate", "hate", "profanity"]
    assert terms.find("x" * 10_000 + " d4mn") == [(10_001, 10_005, "profanity")]


# No character that is, or that NFKC makes, a digit or a symbol folding reads as a letter.
_LEET_FREE = st.text(
    alphabet=st.characters(blacklist_characters=sorted(LEET_CHARS), blacklist_categories=["Nd"])
).filter(lambda text: not LEET_CHARS.intersection(unicodedata.normalize("NFKC", text)))


@settings(max_examples=200, deadline=None)
@given(_LEET_FREE)
def test_text_without_leet_characters_gets_the_same_findings(text: str) -> None:
    assert WITH_LITERALS.scan(text, NONE) == WITHOUT_LITERALS.scan(text, NONE)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from(["n1g3r", "R3T@RD", "\uff4e\uff11\uff47\uff13\uff52"]), st.text())
def test_literal_spans_index_the_original(prefix: str, term: str, suffix: str) -> None:
    text = f"{prefix} {term} {suffix}"
    start = len(prefix) + 1
    spans = [f.span for f in PACKAGED.scan(text, NONE)]
    assert (start, start + len(term)) in spans or any(
        span is not None and span[0] <= start and span[1] >= start + len(term) for span in spans
    )
