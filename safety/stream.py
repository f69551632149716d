"""Scanning a stream with a hold-back window: text goes out only once it is scanned and more
than ``hold_back_chars`` behind the generated edge.

Why this catches a flagged term split across chunks: a scan runs once more than the window
is held, covers the window of text already released before the held text (``[released -
window, edge)``), and releases up to ``edge - lag`` where ``lag = window - step`` (``step``
is an eighth of the window: one scan per ``step`` characters instead of one per token). A
term no longer than ``lag`` that crosses the new release point therefore lies wholly inside
the scanned segment, so it is found and its unreleased part removed before any of it goes
out; one that crossed the previous release point was found by the previous scan. Nothing
past the window is ever held: after :meth:`feed` at most ``hold_back_chars`` characters wait
(none once a block stops the stream).

The trade-offs, documented in docs/safety.md: a classifier scores a segment of about two
windows, not the whole answer; ``regenerate`` cannot take back released text, so a stream
treats it as ``redact``; ``block`` stops the stream where it is (what went out had passed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from safety.findings import Finding, ScanContext
from safety.scanner import REDACTION, CheckFailure, SafetyScanner, Verdict, merge_spans, span_digest

__all__ = ["HoldBackStream", "StreamOutcome"]


@dataclass(frozen=True)
class StreamOutcome:
    """A finished stream: what went out, the digests of what did not, and the verdict over
    every scan of it."""

    text: str
    removed_sha256: tuple[str, ...]
    verdict: Verdict
    blocked: bool


class HoldBackStream:
    """One choice's stream. Feed it the generated pieces; send on what it returns."""

    def __init__(self, scanner: SafetyScanner, window: int | None = None) -> None:
        self.scanner = scanner
        self.window = scanner.policy.hold_back_chars if window is None else window
        # Released text stays `lag` behind the edge; a scan per `step` new characters.
        self.step = max(1, self.window // 8)
        self.lag = max(0, self.window - self.step)
        self._text = ""  # everything generated so far, as generated
        self._released = 0  # how much of it has been decided and sent on
        self._sent: list[str] = []  # what went out (redactions in place)
        self._removed: list[tuple[int, int]] = []  # merged, absolute, never before a release
        self._findings: dict[tuple[str, str, tuple[int, int] | None], Finding] = {}
        self._failures: dict[tuple[str, str], CheckFailure] = {}
        self._context = ScanContext()
        self._blocked_at: int | None = None
        self._finished: StreamOutcome | None = None

    @property
    def held(self) -> int:
        """Characters generated but not yet released."""
        return 0 if self._blocked_at is not None else len(self._text) - self._released

    def feed(self, piece: str) -> str:
        """Take the next generated piece; return the text now safe to send (maybe empty)."""
        if self._finished is not None:
            raise RuntimeError("the stream is finished")
        self._text += piece
        if self._blocked_at is not None or len(self._text) - self._released <= self.window:
            return ""
        return self._advance(len(self._text) - self.lag)

    def finish(self) -> str:
        """The generation ended: scan and release the tail (what the window still held)."""
        if self._finished is not None:
            return ""
        tail = "" if self._blocked_at is not None else self._advance(len(self._text))
        self._finished = self._outcome()
        return tail

    @property
    def outcome(self) -> StreamOutcome:
        if self._finished is None:
            raise RuntimeError("finish() the stream first")
        return self._finished

    # ------------------------------------------------------------------ machinery

    def _advance(self, upto: int) -> str:
        start = max(0, self._released - self.window)
        verdict = self.scanner.scan(self._text[start:])
        self._remember(verdict, start)
        if verdict.action == "block":
            self._blocked_at = self._released
            return ""
        if verdict.action in ("redact", "regenerate"):
            for span_start, span_end in self.scanner.removed_spans(self._text[start:], verdict):
                # Only what is still held can change; what went out was scanned clean.
                lo = max(start + span_start, self._released)
                hi = start + span_end
                if lo < hi:
                    self._removed = merge_spans([*self._removed, (lo, hi)])
        released = self._emit(self._released, upto)
        self._released = max(self._released, upto)
        self._sent.append(released)
        return released

    def _emit(self, begin: int, end: int) -> str:
        parts: list[str] = []
        cursor = begin
        for lo, hi in self._removed:
            if hi <= begin or lo >= end:
                continue
            if lo >= begin:
                parts.append(self._text[cursor:lo])
                parts.append(REDACTION)  # once, where the removed span starts
            cursor = max(cursor, min(hi, end))
        if cursor < end:
            parts.append(self._text[cursor:end])
        return "".join(parts)

    def _remember(self, verdict: Verdict, offset: int) -> None:
        for finding in verdict.findings:
            span = (
                None
                if finding.span is None
                else (finding.span[0] + offset, finding.span[1] + offset)
            )
            key = (finding.check, finding.category, span)
            old = self._findings.get(key)
            if old is None or old.score < finding.score:
                self._findings[key] = Finding(
                    finding.check, finding.category, finding.score, span, finding.language
                )
        for failure in verdict.failures:
            self._failures.setdefault((failure.check, failure.reason), failure)
        if verdict.language is not None:
            self._context = ScanContext(verdict.language, verdict.language_score)

    def _outcome(self) -> StreamOutcome:
        verdict = self.scanner.judge(
            tuple(self._findings.values()), list(self._failures.values()), self._context
        )
        if verdict.action == "regenerate":
            # A stream cannot take back what it sent: it removed the spans instead.
            verdict = replace(verdict, action="redact")
        blocked_at = self._blocked_at
        spans = list(self._removed)
        if blocked_at is not None:
            spans = [(lo, min(hi, blocked_at)) for lo, hi in spans if lo < blocked_at]
            if blocked_at < len(self._text):
                spans.append((blocked_at, len(self._text)))
        digests = tuple(span_digest(self._text[lo:hi]) for lo, hi in spans if lo < hi)
        return StreamOutcome(
            text="".join(self._sent),
            removed_sha256=digests,
            verdict=verdict,
            blocked=blocked_at is not None,
        )
