"""What a safety check reports, and the interface every check implements.

Categories use the MLCommons AILuminate hazard taxonomy names (snake_case) where they fit,
plus ``profanity``, which that taxonomy does not cover but publishers ask for. A check reports
*findings* (a category, a score in [0, 1], and where in the text); the policy, not the check,
decides what is flagged and what happens to the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "HAZARD_CATEGORIES",
    "Check",
    "Finding",
    "ScanContext",
]

HAZARD_CATEGORIES: tuple[str, ...] = (
    # MLCommons AILuminate v1.0 hazard categories.
    "violent_crimes",
    "nonviolent_crimes",
    "sex_related_crimes",
    "child_sexual_exploitation",
    "indiscriminate_weapons",
    "suicide_self_harm",
    "hate",
    "specialized_advice",
    "privacy",
    "intellectual_property",
    "elections",
    "defamation",
    "sexual_content",
    # Not in the taxonomy: vulgar language.
    "profanity",
)
"""Every category a check may report."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found.

    ``span`` is a half-open character range ``[start, end)`` into the scanned text, or ``None``
    when the finding is about the whole text (a classifier score). ``language`` is the
    language the evidence is in when the check knows it (ISO 639-1).
    """

    check: str
    category: str
    score: float
    span: tuple[int, int] | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What earlier checks learned that later ones may use (the language of the text)."""

    language: str | None = None
    language_score: float | None = None


@runtime_checkable
class Check(Protocol):
    """A safety check. Implementations load their packaged data lazily and are thread-safe
    for concurrent :meth:`scan` calls once constructed."""

    name: str
    """Its registry name (what a policy's ``checks`` lists)."""

    categories: frozenset[str]
    """The categories it can report."""

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        """Findings in ``text``; raises :class:`~safety.errors.CheckFailedError` on failure."""
        ...
