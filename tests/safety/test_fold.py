"""Folding for list matching: spans index the original text; NFKC and case do not matter."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from safety.checks._fold import fold, fold_term


def test_folds_case_accents_width_and_leetspeak() -> None:
    assert fold("ÉNCULÉ").text == "encule"
    assert fold("\uff26\uff35\uff23\uff2b").text == "fuck"
    assert fold("Sh1t $h!t @ss").text == "shit shit ass"  # "!" is "i" before a letter
    assert fold("wow! ok !").text == "wow! ok !"
    assert fold("Scheiße").text == "scheisse"


def test_drops_invisible_format_characters() -> None:
    # Zero-width space and soft hyphen are the usual ways to split a word invisibly.
    assert fold("fu\u200bck").text == "fuck"
    assert fold("fu\u00adck").text == "fuck"


def test_collapses_stretched_letters_but_keeps_doubled_ones() -> None:
    folded = fold("fuuuuck ass")
    assert folded.text == "fuck ass"
    assert folded.span(0, 4) == (0, 7)


def test_span_covers_an_expanded_character() -> None:
    folded = fold("a ﬁ b")  # the ligature folds to two characters
    assert folded.text == "a fi b"
    assert folded.span(2, 4) == (2, 3)


def test_term_and_text_fold_alike() -> None:
    assert fold_term("Maricón") == fold("MARICÓN").text


@given(st.text())
def test_every_folded_character_maps_into_the_original(text: str) -> None:
    folded = fold(text)
    for index in range(len(folded.text)):
        start, end = folded.span(index, index + 1)
        assert 0 <= start < end <= len(text)


@given(st.text())
def test_nfc_nfkc_and_nfd_fold_alike(text: str) -> None:
    folded = fold(text).text
    assert fold(unicodedata.normalize("NFKC", text)).text == folded
    assert fold(unicodedata.normalize("NFC", text)).text == folded
    assert fold(unicodedata.normalize("NFKD", text)).text == folded


@given(st.text())
def test_casefolded_text_folds_alike(text: str) -> None:
    assert fold(text.casefold()).text == fold(text).text
