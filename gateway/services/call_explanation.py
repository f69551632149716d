"""What a logged call did to its outputs, in a shape people can read: safety verdicts,
reasoning and answer digests, and the token logprobs a caller pastes back (issue 19, item 3).

The log entry is the only source: nothing here stores or recomputes a verdict, so the page
shows exactly what an auditor reading the entry would see. Older entries without the fields
explain to nothing extra.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.errors import ValidationFailed
from gateway.ledger.errors import LogEntryNotFound
from gateway.ledger.reads import can_see, entry_row
from gateway.schemas.openai import ChatLogprobs, CompletionLogprobs, TokenSpan

__all__ = [
    "CallExplanation",
    "LogprobsInvalid",
    "OutputExplanation",
    "SafetyVerdict",
    "TokenLogprobView",
    "explain_call",
    "explain_entry",
    "align_logprobs",
    "parse_logprobs",
]

GENERATION = "generation.completed"
# Checked before parsing (the JSON is pasted by anyone); under Starlette's 1 MiB form part.
MAX_LOGPROBS_CHARS = 500_000
MAX_LOGPROB_TOKENS = 65_536  # as many tokens as the detector scores
MAX_ALTERNATIVES = 20  # OpenAI's own ceiling on top_logprobs


class LogprobsInvalid(ValidationFailed):
    code = "logprobs_invalid"
    title = "Token logprobs not in OpenAI's shape"


@dataclass(frozen=True, slots=True)
class SafetyVerdict:
    """One output's ``safety`` object of a ``generation.completed`` entry."""

    policy_digest: str
    language: str | None
    categories: tuple[str, ...]
    scores: tuple[tuple[str, str], ...]  # (category, decimal string), highest first
    action: str
    applied: str
    removed_sha256: tuple[str, ...]
    failed_checks: tuple[tuple[str, str], ...]  # (check, reason) as the scanner logged them
    regenerated: bool


@dataclass(frozen=True, slots=True)
class OutputExplanation:
    index: int
    sha256: str | None
    tokens: int | None
    finish_reason: str | None
    reasoning_sha256: str | None
    answer_sha256: str | None
    reasoning_sealed: bool
    safety: SafetyVerdict | None


@dataclass(frozen=True, slots=True)
class CallExplanation:
    log_index: int
    call_id: str | None
    model: str | None
    repo_id: str | None  # what the detector page's model picker names
    policy_digest: str | None  # the call's policy (``fields.safety``), when one ran
    on_check_failure: str | None
    unavailable_checks: tuple[tuple[str, str], ...]
    outputs: tuple[OutputExplanation, ...]

    @property
    def has_details(self) -> bool:
        """Whether the entry carries anything beyond digests every entry had: older entries
        (no safety layer, no reasoning split) get no extra section."""
        return self.policy_digest is not None or any(
            o.safety is not None or o.answer_sha256 is not None for o in self.outputs
        )

    def output(self, index: int) -> OutputExplanation | None:
        return next((o for o in self.outputs if o.index == index), None)


@dataclass(frozen=True, slots=True)
class TokenLogprobView:
    token: str
    logprob: float
    alternatives: tuple[tuple[str, float], ...]

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _failures(value: Any) -> tuple[tuple[str, str], ...]:
    """``[{"check", "reason"}]`` (safety.scanner); a bare name is tolerated as a reasonless one."""
    if not isinstance(value, list):
        return ()
    return tuple(
        (str(v.get("check", "")), str(v.get("reason", "")))
        if isinstance(v, Mapping)
        else (str(v), "")
        for v in value
    )


def _score_key(item: tuple[str, str]) -> tuple[float, str]:
    try:
        return (-float(item[1]), item[0])
    except ValueError:
        return (0.0, item[0])


def _verdict(raw: Any) -> SafetyVerdict | None:
    if not isinstance(raw, Mapping):
        return None
    scores_raw = raw.get("scores")
    scores = (
        tuple(sorted(((str(k), str(v)) for k, v in scores_raw.items()), key=_score_key))
        if isinstance(scores_raw, Mapping)
        else ()
    )
    return SafetyVerdict(
        policy_digest=str(raw.get("policy_digest", "")),
        language=_text(raw.get("language")),
        categories=_strings(raw.get("categories")),
        scores=scores,
        action=str(raw.get("action", "")),
        applied=str(raw.get("applied", raw.get("action", ""))),
        removed_sha256=_strings(raw.get("removed_sha256")),
        failed_checks=_failures(raw.get("failed_checks")),
        regenerated=raw.get("regenerated") is True,
    )


def _output(position: int, raw: Mapping[str, Any]) -> OutputExplanation:
    index = raw.get("index", position)
    tokens = raw.get("tokens")
    return OutputExplanation(
        index=index if isinstance(index, int) else position,
        sha256=_text(raw.get("sha256")),
        tokens=tokens if isinstance(tokens, int) else None,
        finish_reason=_text(raw.get("finish_reason")),
        reasoning_sha256=_text(raw.get("reasoning_sha256")),
        answer_sha256=_text(raw.get("answer_sha256")),
        reasoning_sealed=raw.get("reasoning_sealed") is not None,
        safety=_verdict(raw.get("safety")),
    )


def _model(raw: Any) -> str | None:
    if not isinstance(raw, Mapping) or "repo_id" not in raw:
        return None
    tier = f":{raw['tier']}" if raw.get("tier") else ""
    return f"{raw['repo_id']}@{raw.get('version', '?')}{tier}"


def _repo(raw: Any) -> str | None:
    return str(raw["repo_id"]) if isinstance(raw, Mapping) and "repo_id" in raw else None


def explain_entry(log_index: int, entry: Mapping[str, Any]) -> CallExplanation | None:
    """The readable view of a ``generation.completed`` entry; None for any other action."""
    if entry.get("action") != GENERATION:
        return None
    fields = entry.get("fields")
    if not isinstance(fields, Mapping):
        return None
    outputs_raw = fields.get("outputs")
    outputs = tuple(
        _output(i, o)
        for i, o in enumerate(outputs_raw if isinstance(outputs_raw, list) else [])
        if isinstance(o, Mapping)
    )
    call_safety = fields.get("safety")
    call_safety = call_safety if isinstance(call_safety, Mapping) else {}
    unavailable = call_safety.get("unavailable_checks")
    return CallExplanation(
        log_index=log_index,
        call_id=_text(fields.get("call_id")),
        model=_model(fields.get("model")),
        repo_id=_repo(fields.get("model")),
        policy_digest=_text(call_safety.get("policy_digest")),
        on_check_failure=_text(call_safety.get("on_check_failure")),
        unavailable_checks=(
            tuple((str(k), str(v)) for k, v in unavailable.items())
            if isinstance(unavailable, Mapping)
            else ()
        ),
        outputs=outputs,
    )


def explain_call(
    session: Session, principal: Principal | None, log_index: int
) -> CallExplanation | None:
    """The explanation of entry ``log_index`` if ``principal`` may read it (the log's own
    rule: an attribution names a call to anyone, its verdicts only to those who may read it)."""
    try:
        row = entry_row(session, log_index)
    except LogEntryNotFound:  # an explanation is extra: its absence never fails a page
        return None
    if not can_see(principal, row):
        return None
    return explain_entry(log_index, json.loads(row.entry))


def _view(token: str, logprob: float, alternatives: list[tuple[str, float]]) -> TokenLogprobView:
    ranked = sorted(alternatives, key=lambda a: -a[1])[:MAX_ALTERNATIVES]
    return TokenLogprobView(token=token, logprob=logprob, alternatives=tuple(ranked))


def parse_logprobs(text: str) -> list[TokenLogprobView]:
    """Token logprobs as the caller received them, in either OpenAI shape: chat's
    ``{"content": [{token, logprob, top_logprobs}]}`` or completions' ``{tokens,
    token_logprobs, top_logprobs}`` (a whole ``choices[i]`` with a ``logprobs`` key too).

    The gateway keeps no logprobs after a call, so this is the only way to see them here.
    """
    if len(text) > MAX_LOGPROBS_CHARS:
        raise LogprobsInvalid(f"logprobs are limited to {MAX_LOGPROBS_CHARS} characters")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LogprobsInvalid("the logprobs are not JSON") from exc
    if isinstance(raw, dict) and isinstance(raw.get("logprobs"), dict):
        raw = raw["logprobs"]
    try:
        if isinstance(raw, dict) and "content" in raw:
            chat = ChatLogprobs.model_validate(raw)
            views = [
                _view(t.token, t.logprob, [(a.token, a.logprob) for a in t.top_logprobs])
                for t in chat.content
            ]
        elif isinstance(raw, dict) and "tokens" in raw:
            raw.setdefault("text_offset", [])
            plain = CompletionLogprobs.model_validate(raw)
            if len(plain.tokens) != len(plain.token_logprobs):
                raise LogprobsInvalid("`tokens` and `token_logprobs` differ in length")
            tops = plain.top_logprobs or []
            # An echoed prompt's first token has a null logprob: those are a prompt's, not
            # sampled tokens', and were refused before the schema allowed nulls; still so.
            if any(lp is None for lp in plain.token_logprobs):
                raise LogprobsInvalid("a logprob is null: these are not a sampled text's")
            views = [
                _view(tok, lp or 0.0, list((tops[i] or {}).items()) if i < len(tops) else [])
                for i, (tok, lp) in enumerate(zip(plain.tokens, plain.token_logprobs, strict=True))
            ]
        else:
            raise LogprobsInvalid(
                'expected OpenAI logprobs: {"content": [...]} or {"tokens": [...], '
                '"token_logprobs": [...]}'
            )
    except ValidationError as exc:
        problems = exc.error_count()
        raise LogprobsInvalid(
            f"the logprobs are not in OpenAI's shape ({problems} errors)"
        ) from exc
    if len(views) > MAX_LOGPROB_TOKENS:
        raise LogprobsInvalid(f"logprobs are limited to {MAX_LOGPROB_TOKENS} tokens")
    if any(not math.isfinite(v.logprob) or v.logprob > 0 for v in views):
        raise LogprobsInvalid("a logprob is not a finite number <= 0")
    return views


def align_logprobs(
    spans: list[TokenSpan], text: str | None, views: list[TokenLogprobView]
) -> dict[int, TokenLogprobView]:
    """The pasted logprobs keyed by the detector's token index, where the i-th logprob token
    is the detector's i-th token (same text). The detector may read the text with another
    tokenization; a token that does not match gets no logprob rather than a wrong one."""
    out: dict[int, TokenLogprobView] = {}
    for span in spans:
        i = span.token_index
        if i >= len(views):
            continue
        piece = span.text
        if piece is None and text is not None and span.start is not None and span.end is not None:
            piece = text[span.start : span.end]
        if piece is not None and piece == views[i].token:
            out[i] = views[i]
    return out
