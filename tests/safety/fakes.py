"""Small checks implementing :class:`safety.Check` for tests (the packaged ones live in
``safety.checks``)."""

from __future__ import annotations

from collections.abc import Sequence

from safety.findings import Finding, ScanContext


class TermCheck:
    """Finds fixed terms (case-insensitive), each as one span of ``category``."""

    name = "wordlist"

    def __init__(self, terms: dict[str, str], score: float = 1.0) -> None:
        self.terms = {t.lower(): c for t, c in terms.items()}
        self.categories = frozenset(self.terms.values())
        self.score = score
        self.contexts: list[ScanContext] = []

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        self.contexts.append(context)
        low = text.lower()
        found = []
        for term, category in self.terms.items():
            start = low.find(term)
            while start >= 0:
                found.append(Finding(self.name, category, self.score, (start, start + len(term))))
                start = low.find(term, start + 1)
        return found


class WholeTextCheck:
    """A classifier stand-in: one score for the whole text when a trigger word is in it."""

    name = "classifier"

    def __init__(self, trigger: str, category: str, score: float) -> None:
        self.trigger, self.category, self.score = trigger, category, score
        self.categories = frozenset({category})

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        if self.trigger in text:
            return [Finding(self.name, self.category, self.score)]
        return [Finding(self.name, self.category, 0.01)]


class FakeLangId:
    name = "langid"
    categories: frozenset[str] = frozenset()

    def __init__(self, language: str = "fr") -> None:
        self.language = language

    def identify(self, text: str) -> tuple[str, float]:
        return self.language, 0.9

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        raise AssertionError("langid runs through identify()")


class BrokenCheck:
    name = "classifier"
    categories = frozenset({"hate"})

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        raise RuntimeError("model file missing\nsecond line")
