"""A logged generation with safety verdicts and reasoning digests, for the explanation pages'
tests (server-rendered and in a browser). Category names and reasons carry markup: the
pages must show it as text."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from gateway.schemas.openai import CallAttribution, DetectResponse, TokenSpan

ATTACK = "<script>alert(1)</script>"
REMOVED = "sha256:" + "ab" * 32
POLICY = "sha256:" + "cd" * 32


def generation_fields(safety: bool = True) -> dict[str, Any]:
    output: dict[str, Any] = {
        "index": 0,
        "prompt_index": 0,
        "payload": 5,
        "sha256": "sha256:" + "01" * 32,
        "tokens": 3,
        "finish_reason": "stop",
    }
    fields: dict[str, Any] = {
        "call_id": "chatcmpl-xyz",
        "endpoint": "chat.completions",
        "model": {"repo_id": "acme/chatty", "version": "1.0.0", "tier": "open"},
        "outputs": [output],
    }
    if safety:
        output["reasoning_sha256"] = "sha256:" + "02" * 32
        output["answer_sha256"] = "sha256:" + "03" * 32
        output["safety"] = {
            "policy_digest": POLICY,
            "language": "fr",
            "categories": ["hate", ATTACK],
            "scores": {"hate": "1", "profanity": "0.12", ATTACK: "0.5"},
            "action": "regenerate",
            "applied": "redact",
            "removed_sha256": [REMOVED],
            "regenerated": True,
            "failed_checks": [{"check": "guard", "reason": f"RuntimeError: {ATTACK}"}],
        }
        fields["safety"] = {
            "policy_digest": POLICY,
            "on_check_failure": "closed",
            "hold_back_chars": 256,
            "unavailable_checks": {"guard": f"guard refused: {ATTACK}"},
        }
    return fields


def log_generation(engine: Engine, username: str, fields: dict[str, Any]) -> int:
    from gateway.db.engine import session_scope
    from gateway.db.timeutil import utcnow
    from gateway.ledger.events import Actor, record_event
    from gateway.services import accounts

    with session_scope(engine) as session:
        user = accounts.get_user(session, username)
        return record_event(
            session,
            action="generation.completed",
            actor=Actor(kind="account", name=username, user_id=user.id),
            resource="model/acme/chatty@1.0.0",
            now=utcnow(),
            fields=fields,
        )


def attributed(
    log_index: int,
    *,
    call_id: str = "chatcmpl-xyz",
    spans: list[TokenSpan] | None = None,
    tokens_scored: int = 2,
    green_fraction: float = 0.5,
) -> DetectResponse:
    """A detector result naming the call ``call_id`` logged at ``log_index``; by default for
    "Hello world!" (``spans``: the token spans of another text)."""
    if spans is None:
        spans = [
            TokenSpan(start=0, end=5, token_index=0, kind="green", text="Hello"),
            TokenSpan(start=5, end=11, token_index=1, kind="red", text=" world"),
            TokenSpan(start=11, end=12, token_index=2, kind="skip", text="!"),
        ]
    return DetectResponse(
        verdict="watermarked",
        confidence="high",
        watermarked=True,
        z_score=9.5,
        p_value=1e-20,
        log10_p_value=-20,
        raw_p_value=1e-21,
        tokens_total=3,
        tokens_scored=tokens_scored,
        green_fraction=green_fraction,
        model="acme/chatty@1.0.0:open",
        watermark_key_id="k",
        keys_tried=1,
        tests_corrected_for=2,
        payload=5,
        window=None,
        spans=spans,
        attribution=CallAttribution(
            call_id=call_id,
            choice_index=0,
            log_index=log_index,
            time="2026-01-01T00:00:00Z",
            model="acme/chatty@1.0.0:open",
            payload=5,
            p_value=1e-19,
            requester="dev",
            inclusion_proof=None,
        ),
    )
