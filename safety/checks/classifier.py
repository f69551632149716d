"""A small packaged classifier: the ``classifier`` check.

The model is the one the ``alt-profanity-check`` wheel ships (a TF-IDF unigram vectorizer and
five sigmoid-calibrated linear SVMs, English, trained on human-labelled offensive comments).
Calling it through scikit-learn costs about 6 ms per text, more than the whole budget of the
offline checks, so the check reads the model's parameters once and evaluates the same function
itself (a sparse dot product per calibrated SVM; equal to ``predict_proba`` to float precision,
which a test pins).

Identity terms are masked before scoring: such models learn that "gay" or "black" predict
toxicity because comments that attack groups name them ("I am a gay person" scores 0.95
unmasked), the identity bias of Dixon et al. (2018). Masking loses what the terms add to an
insult; the word lists catch the slurs themselves.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from safety.errors import CheckFailedError, CheckUnavailableError
from safety.findings import Finding, ScanContext

__all__ = ["ClassifierCheck", "ProfanityModel", "identity_terms"]

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
# Long texts are scored from their head: bounded cost (the word lists see the whole text).
_MAX_CHARS = 16384
_LANGUAGES = frozenset({"en"})


def identity_terms() -> frozenset[str]:
    """The packaged identity terms (lower case) masked before scoring."""
    raw = resources.files("safety").joinpath("lexicons", "identity_terms.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in raw.splitlines() if line.strip() and line[0] != "#"
    )


@dataclass(frozen=True)
class ProfanityModel:
    """The calibrated linear model as arrays: token -> column, per-column IDF, and per
    calibrated SVM its weights, intercept and sigmoid ``(a, b)``."""

    vocabulary: dict[str, int]
    idf: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]  # (models, columns)
    intercept: npt.NDArray[np.float64]  # (models,)
    sigmoid_a: npt.NDArray[np.float64]
    sigmoid_b: npt.NDArray[np.float64]

    @classmethod
    def from_package(cls) -> ProfanityModel:
        """Read the model ``alt-profanity-check`` ships (needs scikit-learn to unpickle)."""
        try:
            import joblib

            data = resources.files("profanity_check").joinpath("data")
            with resources.as_file(data / "vectorizer.joblib") as path:
                vectorizer = joblib.load(path)
            with resources.as_file(data / "model.joblib") as path:
                model = joblib.load(path)
        except (ImportError, ModuleNotFoundError, OSError) as exc:
            raise CheckUnavailableError(
                f"classifier needs the alt-profanity-check package: {exc}"
            ) from exc
        calibrated = model.calibrated_classifiers_
        if any(c.method != "sigmoid" for c in calibrated) or list(model.classes_) != [0, 1]:
            raise CheckUnavailableError("unexpected profanity-check model layout")
        return cls(
            vocabulary={str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
            idf=np.asarray(vectorizer.idf_, dtype=np.float64),
            coef=np.stack([np.asarray(c.estimator.coef_[0], np.float64) for c in calibrated]),
            intercept=np.array([float(c.estimator.intercept_[0]) for c in calibrated]),
            sigmoid_a=np.array([float(c.calibrators[0].a_) for c in calibrated]),
            sigmoid_b=np.array([float(c.calibrators[0].b_) for c in calibrated]),
        )

    def probability(self, tokens: Sequence[str]) -> float:
        """P(offensive) of a text given its lower-cased tokens (TF-IDF, L2 norm, as sklearn)."""
        counts = Counter(self.vocabulary[t] for t in tokens if t in self.vocabulary)
        if counts:
            columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            weights *= self.idf[columns]
            weights /= math.sqrt(float(weights @ weights))
            decision = self.coef[:, columns] @ weights + self.intercept
        else:
            decision = self.intercept.copy()
        probabilities = 1.0 / (1.0 + np.exp(self.sigmoid_a * decision + self.sigmoid_b))
        return float(probabilities.mean())


class ClassifierCheck:
    """Scores English text with the packaged offensive-language model (category
    ``profanity``, whole-text finding). Text in another identified language is not scored."""

    name = "classifier"
    categories: frozenset[str] = frozenset({"profanity"})

    def __init__(self, *, mask_identity_terms: bool = True) -> None:
        self._mask = mask_identity_terms
        self._model: ProfanityModel | None = None
        self._masked: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def _load(self) -> ProfanityModel:
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._masked = identity_terms() if self._mask else frozenset()
                    self._model = ProfanityModel.from_package()
                model = self._model
        return model

    def probability(self, text: str) -> float:
        """The model's probability that ``text`` is offensive (identity terms masked)."""
        model = self._load()
        tokens = _TOKEN.findall(text[:_MAX_CHARS].lower())
        if self._masked:
            tokens = [t for t in tokens if t not in self._masked]
        return model.probability(tokens)

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        if context.language is not None and context.language not in _LANGUAGES:
            return ()
        try:
            score = self.probability(text)
        except CheckUnavailableError:
            raise
        except Exception as exc:
            raise CheckFailedError(f"classifier check failed: {exc}") from exc
        return (Finding(check=self.name, category="profanity", score=score, language="en"),)
