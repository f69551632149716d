"""Run a policy's checks over a text, decide what the policy does about it, and do it.

:meth:`SafetyScanner.scan` returns a :class:`Verdict` (findings, the highest score per
category, the categories at or over their threshold, the strongest action they call for);
:meth:`SafetyScanner.apply` turns a text and its verdict into the text a caller may see and
the sha256 of every removed span, which is what gets logged instead of the removed words.

A check that raises, or that the host could not provide (a guard model that failed
verification), is a *failure*: with ``on_check_failure: open`` the scan goes on without it,
with ``closed`` the verdict blocks the text. Either way the failure is in the verdict, so the
log says which checks did not run.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safety.findings import HAZARD_CATEGORIES, Check, Finding, ScanContext
from safety.policy import ACTIONS, Action, SafetyPolicy, strongest_action

__all__ = [
    "REDACTION",
    "CheckFailure",
    "SafetyScanner",
    "Verdict",
    "merge_spans",
    "span_digest",
]

REDACTION = "[redacted]"
"""What replaces a removed span in the text a caller sees."""

_LANGID = "langid"
_KNOWN_CATEGORIES = frozenset(HAZARD_CATEGORIES)
# A check reporting more than this many findings for one text is misbehaving; the rest are
# dropped (and the verdict says so) rather than growing the log entry without bound.
_MAX_FINDINGS = 256


def span_digest(text: str) -> str:
    """``sha256:<hex>`` of a removed span's UTF-8 bytes (the form the call log uses)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def merge_spans(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching half-open ranges merged, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """A check that did not run (or raised) on a text, and why."""

    check: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What the policy's checks found in one text and what the policy makes of it.

    ``action`` is the strongest action of the flagged categories, ``"block"`` when a check
    failed under ``on_check_failure: closed``, and ``None`` when nothing was flagged.
    """

    findings: tuple[Finding, ...]
    scores: Mapping[str, float]
    flagged: tuple[str, ...]
    action: Action | None
    policy_digest: str
    language: str | None = None
    language_score: float | None = None
    failures: tuple[CheckFailure, ...] = ()
    blocked_by_failure: bool = False
    # Categories flagged whose own action removes text (redact or stronger).
    removing: frozenset[str] = field(default_factory=frozenset)

    @property
    def flagged_any(self) -> bool:
        return bool(self.flagged) or self.blocked_by_failure

    def to_log(self) -> dict[str, Any]:
        """The verdict as the call log records it: no text, scores as decimal strings
        (canonical JSON has no floats)."""
        return {
            "policy_digest": self.policy_digest,
            "language": self.language,
            "categories": list(self.flagged),
            "scores": {name: _decimal(score) for name, score in sorted(self.scores.items())},
            "action": self.action,
            "failed_checks": [{"check": f.check, "reason": f.reason} for f in self.failures],
        }


class SafetyScanner:
    """A policy with the checks it names. Thread-safe as its checks are."""

    def __init__(
        self,
        policy: SafetyPolicy,
        checks: Mapping[str, Check],
        *,
        unavailable: Mapping[str, str] | None = None,
        on_scan: Callable[[float], None] | None = None,
    ) -> None:
        """``unavailable``: why the host could not provide a check the policy names (a guard
        model that failed verification); each scan records it as that check's failure.
        ``on_scan``: called with each scan's duration in seconds (a host's metrics)."""
        self.policy = policy
        self.checks = dict(checks)
        self.unavailable = dict(unavailable or {})
        self.on_scan = on_scan
        self.policy_digest = policy.digest  # once: a stream scans many times

    # ------------------------------------------------------------------ scan

    def scan(self, text: str) -> Verdict:
        """Every check of the policy over ``text`` (language identification first)."""
        if self.on_scan is None:
            return self._scan(text)
        started = time.perf_counter()
        try:
            return self._scan(text)
        finally:
            self.on_scan(time.perf_counter() - started)

    def _scan(self, text: str) -> Verdict:
        failures: list[CheckFailure] = []
        context = self._identify(text, failures)
        findings: list[Finding] = []
        for name in self.policy.checks:
            check = self.checks.get(name)
            if check is None:
                if name != _LANGID:
                    failures.append(CheckFailure(name, self.unavailable.get(name, "not loaded")))
                continue
            if name == _LANGID and callable(getattr(check, "identify", None)):
                continue  # already ran as the language identifier
            try:
                found = list(check.scan(text, context))
            except Exception as exc:  # a check is a plugin: any failure is its failure
                failures.append(CheckFailure(name, _reason(exc)))
                continue
            findings.extend(_valid(name, found, len(text), failures))
        return self.judge(tuple(findings), failures, context)

    def _identify(self, text: str, failures: list[CheckFailure]) -> ScanContext:
        if _LANGID not in self.policy.checks:
            return ScanContext()
        check = self.checks.get(_LANGID)
        if check is None:
            failures.append(CheckFailure(_LANGID, self.unavailable.get(_LANGID, "not loaded")))
            return ScanContext()
        # Duck-typed: the packaged language identifier exposes identify(text) -> (lang, score).
        identify = getattr(check, "identify", None)
        if not callable(identify):
            return ScanContext()
        try:
            language, score = identify(text)
        except Exception as exc:
            failures.append(CheckFailure(_LANGID, _reason(exc)))
            return ScanContext()
        return ScanContext(
            language=str(language) if language else None,
            language_score=_clamp(score) if isinstance(score, int | float) else None,
        )

    def judge(
        self,
        findings: tuple[Finding, ...],
        failures: Sequence[CheckFailure] = (),
        context: ScanContext | None = None,
    ) -> Verdict:
        """The verdict the policy gives ``findings`` (and check failures)."""
        scores: dict[str, float] = {}
        for finding in findings:
            scores[finding.category] = max(scores.get(finding.category, 0.0), finding.score)
        flagged: list[str] = []
        actions: list[Action] = []
        removing: set[str] = set()
        for category, score in sorted(scores.items()):
            rule = self.policy.rule_for(category)
            if rule is None or score < rule.threshold:
                continue
            flagged.append(category)
            actions.append(rule.action)
            if ACTIONS.index(rule.action) >= ACTIONS.index("redact"):
                removing.add(category)
        closed = bool(failures) and self.policy.on_check_failure == "closed"
        if closed:
            actions.append("block")
        context = context or ScanContext()
        return Verdict(
            findings=findings,
            scores=scores,
            flagged=tuple(flagged),
            action=strongest_action(actions),
            policy_digest=self.policy_digest,
            language=context.language,
            language_score=context.language_score,
            failures=tuple(failures),
            blocked_by_failure=closed,
            removing=frozenset(removing),
        )

    # ------------------------------------------------------------------ apply

    def removed_spans(self, text: str, verdict: Verdict) -> list[tuple[int, int]]:
        """The merged ranges of ``text`` the verdict removes (the whole text for a block;
        a finding without a span removes the whole text when its category removes text)."""
        if verdict.action is None or verdict.action == "annotate":
            return []
        if verdict.action == "block":
            return [(0, len(text))] if text else []
        spans = [
            finding.span if finding.span is not None else (0, len(text))
            for finding in verdict.findings
            if finding.category in verdict.removing
        ]
        return merge_spans([s for s in spans if s[0] < s[1]])

    def apply(self, text: str, verdict: Verdict) -> tuple[str, list[str]]:
        """(the text after the verdict's action, the sha256 of each removed span).

        ``annotate`` leaves the text as it is; ``redact`` and ``regenerate`` (whose second
        attempt the caller makes: here it removes like ``redact``) replace each flagged span
        with :data:`REDACTION`; ``block`` returns no text.
        """
        spans = self.removed_spans(text, verdict)
        if not spans:
            return text, []
        digests = [span_digest(text[start:end]) for start, end in spans]
        if verdict.action == "block":
            return "", digests
        parts: list[str] = []
        cursor = 0
        for start, end in spans:
            parts.append(text[cursor:start])
            parts.append(REDACTION)
            cursor = end
        parts.append(text[cursor:])
        return "".join(parts), digests


def _valid(
    name: str, found: Sequence[Finding], length: int, failures: list[CheckFailure]
) -> list[Finding]:
    """A check's findings, kept only where they make sense (known category, score in [0, 1],
    a span inside the text); anything else marks the check as failed."""
    kept: list[Finding] = []
    bad = 0
    for finding in found[:_MAX_FINDINGS]:
        score = finding.score
        span = finding.span
        ok = (
            isinstance(finding, Finding)
            and finding.category in _KNOWN_CATEGORIES
            and isinstance(score, int | float)
            and not math.isnan(score)
        )
        if ok and span is not None:
            ok = 0 <= span[0] <= span[1] <= length
        if not ok:
            bad += 1
            continue
        kept.append(Finding(name, finding.category, _clamp(score), span, finding.language))
    if bad or len(found) > _MAX_FINDINGS:
        failures.append(
            CheckFailure(name, f"{bad + max(0, len(found) - _MAX_FINDINGS)} bad findings")
        )
    return kept


def _clamp(score: float) -> float:
    return min(1.0, max(0.0, float(score)))


def _decimal(score: float) -> str:
    return f"{score:.4f}".rstrip("0").rstrip(".") or "0"


def _reason(exc: BaseException) -> str:
    # The class name and a bounded message: enough to audit, never a whole traceback.
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__
