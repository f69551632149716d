"""The Russian second stage: inflections of listed words found by their stems, ё/е folding,
roots inside words, and the ordinary Russian words (from ``hunspell-ru``) it must leave alone."""

from __future__ import annotations

from importlib import resources

import pytest

from safety import ScanContext
from safety.checks._fold import fold_term
from safety.checks._fuzzy import MIN_STEM, FuzzyData, FuzzyMatcher, skeleton
from safety.checks.wordlist import WordListCheck, fuzzy_suffixes, load_fuzzy, load_wordlist

RU = ScanContext(language="ru", language_score=0.99)
SHIPPED = WordListCheck()
# Made-up words, so each rule is tested apart from the shipped data.
ROWS = [
    ("profanity", "зорблёб", False),  # a noun in its nominative (zero ending)
    ("profanity", "кракозябрый", False),  # an adjective
    ("hate", "шмыргать", False),  # a verb
    ("profanity", "бурдык", False),  # a root for compounds
]
PARTS = {skeleton("бурдык"): "profanity"}


def build(allow: frozenset[str] = frozenset()) -> WordListCheck:
    return WordListCheck.from_rows({"ru": ROWS}, {"ru": FuzzyData(PARTS, allow)})


def found(check: WordListCheck, text: str) -> list[tuple[str, str]]:
    return [(f.category, text[f.span[0] : f.span[1]]) for f in check.scan(text, RU) if f.span]


@pytest.mark.parametrize(
    "text",
    ["эти зорблёбами", "эти зорблёба", "эти зорблёбу", "эти зорблёбов", "эти зорблёбах"],
)
def test_rule_stem_a_noun_in_another_case(text: str) -> None:
    word = text.split()[1]
    assert found(build(), text) == [("profanity", word)]
    assert found(WordListCheck.from_rows({"ru": ROWS}), text) == []


def test_rule_stem_an_adjective_compared_and_a_verb_conjugated() -> None:
    # "кракозябрее" shares the stem "кракозябр" with the listed "кракозябрый".
    assert found(build(), "он кракозябрее") == [("profanity", "кракозябрее")]
    assert found(build(), "кракозябрыми делами") == [("profanity", "кракозябрыми")]
    assert found(build(), "не шмыргаешь") == [("hate", "шмыргаешь")]
    assert found(build(), "они шмыргались") == [("hate", "шмыргались")]


def test_yo_and_ye_fold_alike() -> None:
    assert found(build(), "ЗОРБЛЕБАМИ") == [("profanity", "ЗОРБЛЕБАМИ")]
    assert found(build(), "зорблёбе") == [("profanity", "зорблёбе")]


def test_rule_part_a_root_inside_a_compound() -> None:
    assert found(build(), "вот бурдыкоглазый") == [("profanity", "бурдыкоглазый")]


def test_the_allow_list_wins_and_short_stems_are_not_compared() -> None:
    allowed = frozenset({fold_term("зорблёбами")})
    assert found(build(allowed), "эти зорблёбами") == []
    # A stem under MIN_STEM letters is never compared: "бурдык" minus nothing is a part root,
    # but a listed three-letter stem ("шма" from "шмаю") must not make "шмата" a hit.
    check = WordListCheck.from_rows(
        {"ru": [("profanity", "шмаю", False)]}, {"ru": FuzzyData({}, frozenset())}
    )
    assert MIN_STEM > 3
    assert found(check, "шмата") == []


def test_the_stem_rule_is_russian_only() -> None:
    endings, stems = fuzzy_suffixes("ru")
    assert stems
    assert fold_term("ами") in endings
    assert fold_term("ться") in endings
    assert fuzzy_suffixes("en")[1] is False
    # Without stems, only "word minus ending is listed" holds (English's rule 1).
    matcher = FuzzyMatcher({"кракозябрый": "profanity"}, endings, FuzzyData({}, frozenset()))
    assert matcher.category(fold_term("кракозябрее")) is None


def test_identity_stems_are_never_compared() -> None:
    # A listed word sharing its stem with an identity term (a list holding an inflected
    # identity word) must not flag the identity term.
    words = {fold_term("еврея"): "hate"}
    endings, _ = fuzzy_suffixes("ru")
    blocked = frozenset({fold_term("евре")})
    matcher = FuzzyMatcher(words, endings, FuzzyData({}, frozenset(), blocked), stems=True)
    assert matcher.category(fold_term("еврей")) is None
    open_matcher = FuzzyMatcher(words, endings, FuzzyData({}, frozenset()), stems=True)
    assert open_matcher.category(fold_term("еврей")) == "hate"


# --- the shipped data ----------------------------------------------------------------------

# Ordinary words holding a listed root or sharing a listed word's stem: "мудрость" (муд-),
# "корабля"/"употребляете"/"рубля" (бля), "команда"/"мандарин" (манда), "сукно" (сук),
# "оскорбляя"/"ослабляя" (бля), "застрахует" (хуе).
ORDINARY = (
    "Мудрость командира: команда корабля употребляет мандарины за сто рублей.",
    "Сукно и суконные мундиры, сукровица, мудрёные мудрецы, мандаринами.",
    "Командами кораблей, употребляете, рубля, мудрствовать, скорпионы.",
    "Оскорбляя и ослабляя, он застрахует дом, а она застраховала машину.",
)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_russian_words_holding_a_root_are_not_flagged_by_the_second_stage(
    text: str,
) -> None:
    rows = load_wordlist("ru")
    data = load_fuzzy("ru")
    assert data is not None
    both = WordListCheck.from_rows({"ru": rows}, {"ru": data})
    exact = WordListCheck.from_rows({"ru": rows})
    assert found(both, text) == found(exact, text)


def test_every_allowed_russian_word_alone_is_not_flagged_by_the_second_stage() -> None:
    data = load_fuzzy("ru")
    assert data is not None
    assert data.allow
    rows = load_wordlist("ru")
    both = WordListCheck.from_rows({"ru": rows}, {"ru": data})
    exact = WordListCheck.from_rows({"ru": rows})
    words = sorted(data.allow)[::7]
    assert [found(both, w) for w in words] == [found(exact, w) for w in words]
    # Without the allow-list the same words would be flagged: the test can fail.
    bare = WordListCheck.from_rows({"ru": rows}, {"ru": FuzzyData(data.parts, frozenset())})
    assert [found(bare, w) for w in words] != [found(exact, w) for w in words]


def test_shipped_russian_stage_finds_inflections_the_list_does_not_hold() -> None:
    # Held out of the list: every form of one word but its nominative; the stage finds them.
    rows = [r for r in load_wordlist("ru") if not fold_term(r[1]).startswith("долбое")]
    rows.append(("profanity", "долбоёб", False))
    data = load_fuzzy("ru")
    assert data is not None
    check = WordListCheck.from_rows({"ru": rows}, {"ru": data})
    exact = WordListCheck.from_rows({"ru": rows})
    for word in ("долбоёбами", "долбоёбов", "ДОЛБОЕБУ", "долбоёбе"):
        assert found(check, f"эти {word} опять") == [("profanity", word)], word
        assert found(exact, f"эти {word} опять") == [], word


def test_the_packaged_russian_data_round_trips() -> None:
    raw = (
        resources.files("safety")
        .joinpath("lexicons", "wordlists", "ru.fuzzy.tsv")
        .read_text("utf-8")
    )
    body = "".join(line + "\n" for line in raw.splitlines() if not line.startswith("#"))
    assert FuzzyData.parse(raw).format() == body


def test_the_russian_stage_leaves_words_in_latin_letters_alone() -> None:
    # Regression: a Spanish proverb identified as Aragonese ran every list, and "tortas"
    # shared an English-style skeleton with a transliteration on the Russian list.
    rows = [*ROWS, ("profanity", "trutsa", False)]
    check = WordListCheck.from_rows({"ru": rows}, {"ru": FuzzyData(PARTS, frozenset())})
    assert found(check, "buenas son tortas") == []
    assert found(check, "trutsa") == [("profanity", "trutsa")]  # the exact stage still does
    assert found(SHIPPED, "A falta de pan, buenas son tortas.") == []
