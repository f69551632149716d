"""The ``langid`` check: identification offline, context for the other checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safety import ScanContext, load_check
from safety.checks.langid import LanguageIdCheck

CHECK = LanguageIdCheck()


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The weather is lovely today and we are going for a long walk in the park.", "en"),
        ("Il fait très beau aujourd'hui et nous allons nous promener dans le parc.", "fr"),
        ("Heute ist das Wetter schön und wir gehen lange im Park spazieren.", "de"),
        ("Hoy hace muy buen tiempo y vamos a dar un largo paseo por el parque.", "es"),
        ("Сегодня прекрасная погода, и мы идём на долгую прогулку в парк.", "ru"),
    ],
)
def test_identifies_the_supported_languages(text: str, language: str) -> None:
    found, score = CHECK.identify(text)
    assert found == language
    assert 0.5 < score <= 1.0


def test_too_few_letters_is_no_language() -> None:
    assert CHECK.identify("42 !!") == (None, 0.0)
    assert CHECK.context_for("ok") == ScanContext()


def test_context_carries_language_and_score() -> None:
    context = CHECK.context_for("This is plainly an English sentence about gardens.")
    assert context.language == "en"
    assert context.language_score is not None
    assert context.language_score > 0.5


def test_reports_no_findings_and_loads_from_registry() -> None:
    check = load_check("langid")
    assert isinstance(check, LanguageIdCheck)
    assert check.categories == frozenset()
    assert check.scan("anything at all", ScanContext()) == ()


@given(st.text(max_size=300))
def test_arbitrary_unicode_never_crashes(text: str) -> None:
    language, score = CHECK.identify(text)
    assert language is None or isinstance(language, str)
    assert 0.0 <= score <= 1.0 + 1e-9
