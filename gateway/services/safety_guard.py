"""A guard model as a safety check: a sequence classifier published as an ordinary tiergate
release, loaded only from the folder the model cache verified against its signature.

Its ``config.json`` ``id2label`` names the categories it scores: labels that are hazard
category names (``safety.HAZARD_CATEGORIES``) become findings with the label's probability
(sigmoid for ``problem_type: multi_label_classification``, else softmax); other labels
(``safe``, say) are ignored. torch and transformers are imported on first load only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safety.errors import CheckFailedError, CheckUnavailableError
from safety.findings import HAZARD_CATEGORIES, Finding, ScanContext
from safety.policy import GuardRef

__all__ = ["GuardCheck", "check_guard_pin"]

# Tokens a guard reads per scan: a guard scores the head of a long text, as classifiers do.
_MAX_GUARD_TOKENS = 512


def check_guard_pin(guard: GuardRef, statement_sha256: str) -> None:
    """Refuse a guard release whose signed statement is not the one the policy pins (checked
    before any byte of it is fetched or loaded)."""
    if not guard.pinned_to(statement_sha256):
        raise CheckUnavailableError(
            f"guard {guard.release} is release statement sha256:{statement_sha256}; the policy "
            f"pins {guard.digest}"
        )


class GuardCheck:
    """The ``guard`` check of a policy, over a verified release folder."""

    name = "guard"

    def __init__(self, directory: Path) -> None:
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - the server extra installs it
            raise CheckUnavailableError(f"the guard needs transformers: {exc}") from exc
        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(str(directory))
            self._model: Any = AutoModelForSequenceClassification.from_pretrained(
                str(directory)
            ).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise CheckUnavailableError(f"the guard release is no classifier: {exc}") from exc
        labels = dict(getattr(self._model.config, "id2label", {}) or {})
        self._labels = {int(i): str(label) for i, label in labels.items()}
        self.categories = frozenset(v for v in self._labels.values() if v in HAZARD_CATEGORIES)
        if not self.categories:
            raise CheckUnavailableError("the guard's id2label names no hazard category")
        self._multi = self._model.config.problem_type == "multi_label_classification"
        self._lock = threading.Lock()  # one forward pass at a time on a shared module

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        import torch

        try:
            inputs = self._tokenizer(
                text, return_tensors="pt", truncation=True, max_length=_MAX_GUARD_TOKENS
            )
            with self._lock, torch.inference_mode():
                logits = self._model(**inputs).logits[0].float()
        except Exception as exc:
            raise CheckFailedError(f"the guard failed on this text: {exc}") from exc
        probs = torch.sigmoid(logits) if self._multi else torch.softmax(logits, dim=-1)
        return [
            Finding(self.name, label, float(probs[i]), None, context.language)
            for i, label in sorted(self._labels.items())
            if label in self.categories and i < probs.shape[0]
        ]
