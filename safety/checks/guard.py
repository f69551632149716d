"""A guard model: the ``guard`` check's implementation over a sequence-classification model.

A guard model is an ordinary Hugging Face sequence-classification folder (``config.json`` with
``id2label``, weights, tokenizer files), published as a tiergate release; the gateway verifies
the release and hands the verified folder to :meth:`GuardModelCheck.from_dir`. Labels that are
hazard categories become findings; labels named in :data:`BENIGN_LABELS` are the "no hazard"
classes; any other label refuses the model (a guard whose verdicts the policy cannot name).
Loading is strictly local (``local_files_only``): nothing is fetched from a hub.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safety.errors import CheckFailedError, CheckUnavailableError
from safety.findings import HAZARD_CATEGORIES, Finding, ScanContext

__all__ = ["BENIGN_LABELS", "GuardModelCheck"]

BENIGN_LABELS: frozenset[str] = frozenset({"safe", "benign", "none", "ok", "neutral", "clean"})
"""Labels that mean "no hazard" (compared case-insensitively)."""

_MAX_CHARS = 16384


class GuardModelCheck:
    """Scores text with a local sequence-classification model; one whole-text finding per
    hazard label (softmax over labels, or sigmoid per label for multi-label models)."""

    name = "guard"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Mapping[int, str],
        *,
        multi_label: bool,
        max_length: int,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._labels = dict(labels)
        self._multi_label = multi_label
        self._max_length = max_length
        self._lock = threading.Lock()
        self.categories: frozenset[str] = frozenset(
            label for label in self._labels.values() if label in HAZARD_CATEGORIES
        )

    @classmethod
    def from_dir(cls, path: str | Path, *, max_length: int = 512) -> GuardModelCheck:
        """Load the guard model in ``path`` (already verified by the caller).

        Raises :class:`CheckUnavailableError` when transformers is missing, the folder is not
        a sequence-classification model, or a label is neither a hazard category nor benign.
        """
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise CheckUnavailableError(f"guard model folder {folder.name!r} has no config.json")
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise CheckUnavailableError(f"a guard model needs transformers: {exc}") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True
            )
        except (OSError, ValueError, KeyError) as exc:
            raise CheckUnavailableError(f"guard model cannot load: {exc}") from exc
        model.eval()
        labels = {int(k): str(v) for k, v in model.config.id2label.items()}
        for label in labels.values():
            if label not in HAZARD_CATEGORIES and label.lower() not in BENIGN_LABELS:
                raise CheckUnavailableError(
                    f"guard model label {label!r} is neither a hazard category nor benign"
                )
        if not any(label in HAZARD_CATEGORIES for label in labels.values()):
            raise CheckUnavailableError("guard model has no hazard-category label")
        multi = getattr(model.config, "problem_type", None) == "multi_label_classification"
        limit = min(max_length, int(getattr(tokenizer, "model_max_length", max_length)))
        return cls(model, tokenizer, labels, multi_label=multi, max_length=limit)

    def scores(self, text: str) -> dict[str, float]:
        """Each hazard label's score for ``text``."""
        import torch

        inputs = self._tokenizer(
            text[:_MAX_CHARS], return_tensors="pt", truncation=True, max_length=self._max_length
        )
        # One forward pass at a time: tokenizers and some models are not reentrant.
        with self._lock, torch.inference_mode():
            logits = self._model(**inputs).logits[0].float()
        probs = torch.sigmoid(logits) if self._multi_label else torch.softmax(logits, dim=-1)
        return {
            label: float(probs[index])
            for index, label in self._labels.items()
            if label in HAZARD_CATEGORIES
        }

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        try:
            scores = self.scores(text)
        except Exception as exc:
            raise CheckFailedError(f"guard check failed: {exc}") from exc
        return tuple(
            Finding(check=self.name, category=category, score=score)
            for category, score in sorted(scores.items())
        )
