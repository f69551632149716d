"""The ``classifier`` check: the packaged model, evaluated without scikit-learn's overhead."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety import ScanContext, load_check
from safety.checks.classifier import ClassifierCheck, identity_terms

CHECK = ClassifierCheck()
UNMASKED = ClassifierCheck(mask_identity_terms=False)
TEXTS = [
    "you are a fucking idiot",
    "I hope you have a lovely day with your family",
    "",
    "Ünïcode ﬁne text with numbers 42",
    "the the the the",
]


def test_same_probabilities_as_the_package() -> None:
    profanity_check = pytest.importorskip("profanity_check")
    expected = profanity_check.predict_prob(TEXTS)
    for text, want in zip(TEXTS, expected, strict=True):
        assert UNMASKED.probability(text) == pytest.approx(float(want), abs=1e-9)


def test_scores_offensive_text_high_and_plain_text_low() -> None:
    assert CHECK.probability("you are a fucking idiot") > 0.9
    assert CHECK.probability("I hope you have a lovely day with your family") < 0.2


def test_identity_terms_do_not_move_the_score() -> None:
    # Regression: unmasked, the model scores "I am a gay person" 0.95 (identity bias).
    assert UNMASKED.probability("I am a gay person") > 0.5
    scores = {
        CHECK.probability(f"I am a {group} person")
        for group in ("gay", "straight", "black", "white", "muslim", "christian")
    }
    assert len(scores) == 1
    assert scores.pop() < 0.5
    assert {"gay", "muslim", "black", "jewish"} <= identity_terms()


def test_scans_english_and_unknown_but_not_other_languages() -> None:
    (finding,) = CHECK.scan("you are a fucking idiot", ScanContext(language="en"))
    assert finding.category == "profanity"
    assert finding.span is None
    assert finding.score > 0.9
    assert len(CHECK.scan("you are a fucking idiot", ScanContext())) == 1
    assert CHECK.scan("quel con", ScanContext(language="fr", language_score=0.9)) == ()


def test_registry_builds_it() -> None:
    assert isinstance(load_check("classifier"), ClassifierCheck)


@settings(max_examples=50)
@given(st.text(max_size=500))
def test_arbitrary_unicode_is_a_probability(text: str) -> None:
    assert 0.0 <= CHECK.probability(text) <= 1.0
