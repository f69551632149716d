"""Language identification offline: the ``langid`` check.

It uses ``py3langid`` (a maintained fork of langid.py: a naive Bayes model over byte n-grams,
97 languages plus a few more, shipped inside the wheel; about 0.4 ms for 2,500 characters). The
check itself reports no hazard; the scanner calls :meth:`LanguageIdCheck.identify` first and
puts the answer in :class:`~safety.findings.ScanContext`, so the word lists and the classifier
know which language they read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from safety.errors import CheckFailedError, CheckUnavailableError
from safety.findings import Finding, ScanContext

__all__ = ["LanguageIdCheck"]

# Long texts are identified from their head: the answer is settled within a few hundred
# characters, and the cost stays bounded whatever the caller sends.
_MAX_CHARS = 1024
# Below this many letters an identification is noise ("ok", "42"): no language, every list runs.
_MIN_LETTERS = 3


class LanguageIdCheck:
    """Identifies the language of a text (ISO 639 code and a probability)."""

    name = "langid"
    categories: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._identifier: Any = None
        self._lock = threading.Lock()

    def _model(self) -> Any:
        if self._identifier is None:
            with self._lock:
                if self._identifier is None:
                    try:
                        from py3langid.langid import MODEL_FILE, LanguageIdentifier
                    except ImportError as exc:
                        raise CheckUnavailableError(
                            f"langid needs the py3langid package: {exc}"
                        ) from exc
                    self._identifier = LanguageIdentifier.from_model_file(
                        MODEL_FILE, norm_probs=True
                    )
        return self._identifier

    def identify(self, text: str) -> tuple[str | None, float]:
        """``(language, probability)``; ``(None, 0.0)`` for text with too few letters."""
        head = text[:_MAX_CHARS]
        letters = 0
        for char in head:
            letters += char.isalpha()
            if letters >= _MIN_LETTERS:
                break
        else:
            return None, 0.0
        try:
            language, score = self._model().classify(head)
        except CheckUnavailableError:
            raise
        except Exception as exc:
            raise CheckFailedError(f"langid check failed: {exc}") from exc
        return str(language), float(score)

    def context_for(self, text: str) -> ScanContext:
        """The scan context of ``text`` (what the scanner hands the other checks)."""
        language, score = self.identify(text)
        return ScanContext(language=language, language_score=score if language else None)

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        """No findings: language is context, not a hazard."""
        return ()
