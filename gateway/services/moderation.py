"""`/v1/moderations`: the safety checks on caller-supplied text, in OpenAI's shape.

The policy is the named release's signed one when ``model`` names a release that has one,
else :func:`~gateway.services.safety.default_policy` (every packaged check, flag at 0.5).
Categories are reported under both names: the MLCommons hazard names the checks use and,
where one fits, OpenAI's (``hate``, ``violence``, ``self-harm``, ``sexual``,
``sexual/minors``, ``illicit``, ``illicit/violent``); OpenAI categories with no source are
reported false with score 0, so OpenAI clients parse every field they expect.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.errors import PayloadTooLarge, ValidationFailed
from gateway.services import ratelimit
from gateway.services.models import resolve_model
from gateway.services.safety import SafetyService, default_policy
from safety.findings import HAZARD_CATEGORIES
from safety.scanner import SafetyScanner, Verdict

__all__ = [
    "DEFAULT_MODEL",
    "MAX_INPUTS",
    "MAX_TOTAL_CHARS",
    "OPENAI_NAMES",
    "ModerationLimits",
    "moderate",
]

DEFAULT_MODEL = "tiergate-safety-default"
MAX_INPUTS = 32
MAX_TOTAL_CHARS = 128 * 1024
"""Characters per request, every input together: past it, 413 before any check runs."""

OPENAI_NAMES: dict[str, str] = {
    "hate": "hate",
    "violent_crimes": "violence",
    "suicide_self_harm": "self-harm",
    "sexual_content": "sexual",
    "sex_related_crimes": "sexual",
    "child_sexual_exploitation": "sexual/minors",
    "nonviolent_crimes": "illicit",
    "indiscriminate_weapons": "illicit/violent",
}
"""MLCommons hazard name -> the OpenAI moderation category it is reported under too."""

_OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_RELEASE_NAME = re.compile(r"^[^/\s]+/[^/\s]+$|^[^/\s]+/[^/\s]+[@:]")


@dataclass(frozen=True)
class ModerationLimits:
    per_account: int
    window_seconds: int


def moderate(
    session: Session,
    principal: Principal,
    safety: SafetyService,
    *,
    inputs: str | list[str],
    model: str | None,
    limits: ModerationLimits,
    now: datetime,
) -> dict[str, Any]:
    """The moderation response for ``inputs`` (one result per input, in order)."""
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not texts:
        raise ValidationFailed("input is empty", extra={"param": "input"})
    if len(texts) > MAX_INPUTS:
        raise ValidationFailed(f"at most {MAX_INPUTS} inputs per call", extra={"param": "input"})
    if sum(len(t) for t in texts) > MAX_TOTAL_CHARS:
        raise PayloadTooLarge(f"at most {MAX_TOTAL_CHARS} characters of input per call")
    ratelimit.hit_in(
        session,
        ratelimit.moderation_limits(
            principal.user_id,
            per_account=limits.per_account,
            window_seconds=limits.window_seconds,
        ),
        now=now,
    )
    scanner, name = _scanner(session, principal, safety, model, now)
    results = [_result(scanner.scan(text)) for text in texts]
    return {
        "id": "modr-" + secrets.token_hex(12),
        "model": name,
        "results": results,
        "tiergate": {
            "policy_digest": scanner.policy.digest,
            "unavailable_checks": dict(sorted(scanner.unavailable.items())),
        },
    }


def _scanner(
    session: Session,
    principal: Principal,
    safety: SafetyService,
    model: str | None,
    now: datetime,
) -> tuple[SafetyScanner, str]:
    if model and _RELEASE_NAME.match(model):
        # A release name: its signed policy (the caller must be able to see the release).
        _, ref = resolve_model(session, principal, model, now, for_use=False)
        policy = safety.policy_for(ref.release_id)
        if policy is not None:
            return safety.scanner_with(policy), ref.name
    return safety.scanner_with(default_policy()), model or DEFAULT_MODEL


def _result(verdict: Verdict) -> dict[str, Any]:
    flagged = set(verdict.flagged)
    categories: dict[str, bool] = dict.fromkeys(_OPENAI_CATEGORIES, False)
    scores: dict[str, float] = dict.fromkeys(_OPENAI_CATEGORIES, 0.0)
    for hazard in HAZARD_CATEGORIES:
        score = verdict.scores.get(hazard, 0.0)
        categories[hazard] = hazard in flagged
        scores[hazard] = score
        mapped = OPENAI_NAMES.get(hazard)
        if mapped is not None:
            categories[mapped] = categories[mapped] or hazard in flagged
            scores[mapped] = max(scores[mapped], score)
    return {
        "flagged": bool(flagged),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {name: ["text"] for name in categories},
        "tiergate": {
            "language": verdict.language,
            "failed_checks": [{"check": f.check, "reason": f.reason} for f in verdict.failures],
        },
    }
