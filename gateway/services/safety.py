"""The output-safety rule of the gateway, in one place: which policy a release signed, which
checks enforce it here (a guard model only once its release verifies), what happens to each
choice of a call, and what the call's log entry records about it.

The policy is the release statement's ``safety_policy`` (signed by the publisher, checked at
publish by ``releases._check_safety_policy``); a release without one is served unscanned.
Verdicts go into the call's ``generation.completed`` entry per output (categories, scores,
action, sha256 of each removed span, failed checks): never the removed text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from gateway.db.models import Release
from gateway.generation.sampler import Choice
from safety.errors import SafetyError
from safety.findings import Check
from safety.policy import GuardRef, SafetyPolicy, parse_policy
from safety.registry import load_check
from safety.scanner import SafetyScanner, Verdict
from safety.stream import HoldBackStream

__all__ = [
    "BLOCKED_TEXT",
    "CONTENT_FILTER",
    "GuardLoader",
    "SafetyService",
    "StreamSafety",
    "default_policy",
    "policy_of_statement",
]

CONTENT_FILTER = "content_filter"
"""The finish reason of a blocked choice (OpenAI's)."""
BLOCKED_TEXT = "[withheld by the release's safety policy]"
"""A blocked choice's text: a notice, never empty, so its Content Credential (which binds
the text as returned) and the log's output digest still name what the caller got."""

_releases = Release.__table__.c  # type: ignore[attr-defined]
# A guard release that failed to load is tried again after this long, not on every call.
_GUARD_RETRY_S = 60.0

# Given the policy's guard reference, the verified guard check (raises when its release does
# not verify or cannot load). The generation service supplies it: it owns the model cache.
GuardLoader = Callable[[GuardRef], Check]
# Given the indices of the choices to draw again, those choices, newly sampled.
Regenerate = Callable[[list[int]], Awaitable[list[Choice]]]


def policy_of_statement(statement_envelope: str) -> SafetyPolicy | None:
    """The ``safety_policy`` of a stored (already verified) statement envelope, or ``None``.

    Publish refused policies this install cannot parse; one that no longer parses (a check
    removed since) raises :class:`SafetyError` so calls fail rather than go unscanned.
    """
    try:
        envelope = json.loads(statement_envelope)
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        raw = statement["predicate"].get("safety_policy")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None
    return None if raw is None else parse_policy(raw)


@dataclass(frozen=True)
class _Guard:
    check: Check | None
    reason: str | None
    at: float


class SafetyService:
    """Policies by release, shared check instances, and the per-call enforcement."""

    def __init__(
        self,
        engine: Engine,
        *,
        guard_loader: GuardLoader | None = None,
        check_factory: Callable[[str], Check] = load_check,
        clock: Callable[[], float] = time.monotonic,
        on_scan: Callable[[float], None] | None = None,
    ) -> None:
        """``on_scan``: given every scan's duration in seconds (the gateway's metrics)."""
        self.engine = engine
        self.on_scan = on_scan
        self.guard_loader = guard_loader
        self.check_factory = check_factory
        self.clock = clock
        self._lock = threading.Lock()
        self._policies: dict[int, SafetyPolicy | None] = {}
        self._checks: dict[str, Check | str] = {}  # a check, or why it cannot load
        self._guards: dict[GuardRef, _Guard] = {}

    # ------------------------------------------------------------------ policy and checks

    def policy_for(self, release_id: int) -> SafetyPolicy | None:
        """The policy a release signed (statements never change: cached per release)."""
        with self._lock:
            if release_id in self._policies:
                return self._policies[release_id]
        with self.engine.connect() as connection:
            envelope = connection.execute(
                select(_releases.statement_envelope).where(_releases.id == release_id)
            ).scalar_one_or_none()
        policy = policy_of_statement(envelope or "")
        with self._lock:
            self._policies[release_id] = policy
        return policy

    def scanner_for(self, release_id: int) -> SafetyScanner | None:
        """The release's policy with the checks that enforce it, or ``None`` (no policy).

        Blocking (it may load a classifier or verify a guard release): call it from a
        worker thread. A check that cannot load is passed as unavailable, so the policy's
        ``on_check_failure`` decides and every verdict records it.
        """
        policy = self.policy_for(release_id)
        if policy is None:
            return None
        return self.scanner_with(policy)

    def scanner_with(self, policy: SafetyPolicy) -> SafetyScanner:
        checks: dict[str, Check] = {}
        unavailable: dict[str, str] = {}
        for name in policy.checks:
            found = self._guard(policy.guard) if name == "guard" else self._packaged(name)
            if isinstance(found, str):
                unavailable[name] = found
            else:
                checks[name] = found
        return SafetyScanner(policy, checks, unavailable=unavailable, on_scan=self.on_scan)

    def _packaged(self, name: str) -> Check | str:
        with self._lock:
            known = self._checks.get(name)
        if known is not None:
            return known
        try:
            found: Check | str = self.check_factory(name)
        except SafetyError as exc:
            found = f"unavailable: {exc.message}"[:300]
        with self._lock:
            self._checks.setdefault(name, found)
            return self._checks[name]

    def _guard(self, ref: GuardRef | None) -> Check | str:
        if ref is None:
            return "no guard release named"
        now = self.clock()
        with self._lock:
            cached = self._guards.get(ref)
        if cached is not None and (cached.check is not None or now - cached.at < _GUARD_RETRY_S):
            return cached.check if cached.check is not None else str(cached.reason)
        if self.guard_loader is None:
            guard = _Guard(None, "no guard loader on this gateway", now)
        else:
            try:
                guard = _Guard(self.guard_loader(ref), None, now)
            except Exception as exc:  # any refusal: not verified, not published, not loadable
                message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                guard = _Guard(None, f"guard {ref.release} refused: {message}"[:300], now)
        with self._lock:
            self._guards[ref] = guard
        return guard.check if guard.check is not None else str(guard.reason)

    # ------------------------------------------------------------------ whole choices

    async def enforce(
        self, scanner: SafetyScanner, choices: list[Choice], regenerate: Regenerate
    ) -> tuple[list[Choice], list[dict[str, Any]]]:
        """Each choice scanned and the policy's action applied; ``regenerate`` draws once
        more the choices that call for it (a second flag removes text, at least redacting).

        Returns the choices as the caller may see them and each one's log record.
        """
        verdicts = await asyncio.to_thread(_scan_all, scanner, [c.text for c in choices])
        again = [i for i, v in enumerate(verdicts) if v.action == "regenerate"]
        regenerated: set[int] = set()
        if again:
            fresh = await regenerate(again)
            fresh_verdicts = await asyncio.to_thread(_scan_all, scanner, [c.text for c in fresh])
            for index, choice, verdict in zip(again, fresh, fresh_verdicts, strict=True):
                choices[index], verdicts[index] = choice, verdict
                regenerated.add(index)
        out: list[Choice] = []
        records: list[dict[str, Any]] = []
        for index, (choice, verdict) in enumerate(zip(choices, verdicts, strict=True)):
            text, removed = scanner.apply(choice.text, verdict)
            applied = _applied(verdict, second_attempt=index in regenerated)
            finish = CONTENT_FILTER if applied == "block" else choice.finish_reason
            text = BLOCKED_TEXT if applied == "block" else text
            out.append(replace(choice, text=text, finish_reason=finish))
            records.append(_record(verdict, applied, removed, regenerated=index in regenerated))
        return out, records

    def log_fields(self, scanner: SafetyScanner) -> dict[str, Any]:
        """What the call's entry records once about the policy (each output has its own)."""
        policy = scanner.policy
        return {
            "policy_digest": policy.digest,
            "on_check_failure": policy.on_check_failure,
            "hold_back_chars": policy.hold_back_chars,
            "unavailable_checks": dict(sorted(scanner.unavailable.items())),
        }

    def stream(self, scanner: SafetyScanner, choices: int) -> StreamSafety:
        return StreamSafety(scanner, choices)


class StreamSafety:
    """A streamed call's hold-back windows, one per choice (see :mod:`safety.stream`)."""

    def __init__(self, scanner: SafetyScanner, choices: int) -> None:
        self.scanner = scanner
        self.windows = [HoldBackStream(scanner) for _ in range(choices)]
        self.tails: list[tuple[int, str]] = []
        self.records: list[dict[str, Any]] | None = None

    def feed(self, index: int, text: str) -> str:
        return self.windows[index].feed(text)

    def finalize(self, choices: list[Choice]) -> list[Choice]:
        """The generation ended: scan each tail (kept in :attr:`tails` for the stream to
        send), and return the choices as they went out (the log records those)."""
        out: list[Choice] = []
        records: list[dict[str, Any]] = []
        for index, (window, choice) in enumerate(zip(self.windows, choices, strict=True)):
            tail = window.finish()
            if tail:
                self.tails.append((index, tail))
            outcome = window.outcome
            applied = "block" if outcome.blocked else _applied(outcome.verdict, second_attempt=True)
            finish = CONTENT_FILTER if outcome.blocked else choice.finish_reason
            text = outcome.text
            if outcome.blocked:
                # The notice goes out as the choice's last piece, and is logged as sent.
                self.tails.append((index, BLOCKED_TEXT))
                text += BLOCKED_TEXT
            out.append(replace(choice, text=text, finish_reason=finish))
            records.append(
                _record(outcome.verdict, applied, list(outcome.removed_sha256), regenerated=False)
            )
        self.records = records
        return out

    async def wrap(
        self, events: AsyncIterator[Any], piece: Callable[[int, str], Any]
    ) -> AsyncIterator[Any]:
        """Pieces through the windows; each choice's tail goes out just before the result
        (``piece(index, text)`` builds a piece; anything not a tuple is the result)."""
        try:
            async for event in events:
                if isinstance(event, tuple):
                    choice, text = event[0], event[1]  # StreamPiece(choice, text, kind)
                    released = self.feed(choice, text)
                    if released:
                        yield piece(choice, released)
                    continue
                for index, tail in self.tails:
                    yield piece(index, tail)
                yield event
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()


def _scan_all(scanner: SafetyScanner, texts: Sequence[str]) -> list[Verdict]:
    return [scanner.scan(text) for text in texts]


def _applied(verdict: Verdict, *, second_attempt: bool) -> str | None:
    """What was done: a regenerate verdict on the second attempt (or in a stream) removes."""
    if verdict.action == "regenerate" and second_attempt:
        return "redact"
    return verdict.action


def _record(
    verdict: Verdict, applied: str | None, removed: Sequence[str], *, regenerated: bool
) -> dict[str, Any]:
    record = verdict.to_log()
    record["applied"] = applied
    record["removed_sha256"] = list(removed)
    record["regenerated"] = regenerated
    return record


def default_policy(checks: Mapping[str, Any] | None = None) -> SafetyPolicy:
    """The policy ``/v1/moderations`` uses when ``model`` names no release with one: every
    packaged check, every category flagged at 0.5 (annotate: moderation only reports)."""
    from safety.registry import KNOWN_CHECKS

    return parse_policy(
        {
            "checks": sorted(checks or KNOWN_CHECKS),
            "rules": {"*": {"action": "annotate", "threshold": "0.5"}},
            "on_check_failure": "open",
        }
    )
