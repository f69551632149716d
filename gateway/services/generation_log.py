"""The ``generation.completed`` log entry of a call: what is logged about each output (digests,
payload, reasoning and answer digests, the sealed trace's digest, safety verdicts) and about
the call (model, watermark, sampling, usage, prompt digests, metadata). Built apart from the
transaction that writes it, so the service's log step stays short and this stays testable."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from gateway.auth.principal import Principal
from gateway.db.engine import session_scope
from gateway.generation.calls import CallChoice, record_choices
from gateway.generation.reasoning import sha256_of, split_reasoning
from gateway.ledger.events import Actor, digest_of, entry_time, record_event
from gateway.services.admission import TokenQuota
from gateway.services.generation_types import (
    AdmittedCall,
    GenerationInput,
    GenerationResult,
    LogHook,
)
from gateway.services.sealed_reasoning import AuditorSeal, store_sealed

__all__ = ["CompletedEntry", "completed_entry", "write_completed"]


@dataclass(frozen=True)
class CompletedEntry:
    fields: dict[str, Any]  # the entry's fields
    digests: list[str]  # each choice's text digest (its call tag row)
    sealed: dict[int, bytes]  # choice index -> its trace sealed to the auditor key
    completion_tokens: int


def completed_entry(
    request: GenerationInput,
    admitted: AdmittedCall,
    result: GenerationResult,
    *,
    retain: bool,
    seal: AuditorSeal | None,
    safety_fields: dict[str, Any] | None,
) -> CompletedEntry:
    """The entry for ``result``; ``retain`` keeps plaintext (prompt and outputs) in it."""
    choices = result.choices
    ref = admitted.model.ref
    config = admitted.loaded.extras["config"]
    params = admitted.params
    encoded = admitted.encoded
    outputs = []
    digests = [digest_of(choice.text) for choice in choices]
    sealed: dict[int, bytes] = {}
    for index, (choice, payload) in enumerate(zip(choices, admitted.payloads, strict=True)):
        output: dict[str, Any] = {
            "index": index,
            "prompt_index": index // request.n,
            "payload": payload,
            "sha256": digests[index],
            "tokens": len(choice.token_ids),
            "finish_reason": choice.finish_reason,
        }
        if admitted.markers is not None:
            # Chat: the trace and the answer each get a digest, so either can be shown
            # later and proved to be the one generated (reasoning.check_trace).
            split = split_reasoning(choice.text, admitted.markers, inside=admitted.inside)
            reasoning = split.reasoning
            output["reasoning_sha256"] = None if reasoning is None else sha256_of(reasoning)
            output["answer_sha256"] = sha256_of(split.answer)
            if seal is not None and reasoning is not None:
                sealed[index], output["reasoning_sealed"] = seal.seal(
                    reasoning, call_id=admitted.call_id, choice=index
                )
        if result.safety is not None:
            output["safety"] = result.safety[index]
        if retain:
            output["text"] = choice.text
        outputs.append(output)
    completion_tokens = sum(len(c.token_ids) for c in choices)
    fields: dict[str, Any] = {
        "call_id": admitted.call_id,
        "endpoint": request.endpoint,
        "model": {
            "repo_id": ref.repo_id,
            "version": ref.version,
            "tier": ref.tier,
            "release_digest": ref.statement_digest,
            "tier_manifest_digest": ref.manifest_digest,
        },
        "watermark": {"config": admitted.loaded.extras["config_json"], "key_id": config.key_id},
        "sampling": {
            "max_tokens": params.max_tokens,
            "temperature": repr(params.temperature),
            "top_p": repr(params.top_p),
            "n": request.n,
            "stop": list(params.stop),
            "seed": params.seed,
            "logprobs": params.logprobs,
        },
        "usage": {"prompt_tokens": encoded.tokens, "completion_tokens": completion_tokens},
        "prompt_sha256": encoded.digest,
        "outputs": outputs,
    }
    if safety_fields is not None:
        fields["safety"] = safety_fields
    if len(encoded.digests) > 1:
        fields["prompt_sha256s"] = encoded.digests
    if request.metadata:
        fields["metadata"] = dict(request.metadata)
    if retain:
        if request.messages is not None:
            fields["prompt"] = json.dumps(request.messages, ensure_ascii=False)
        elif len(request.prompts or [""]) == 1:
            fields["prompt"] = (request.prompts or [""])[0]
        else:
            fields["prompts"] = request.prompts
    return CompletedEntry(fields, digests, sealed, completion_tokens)


def write_completed(
    engine: Engine,
    quota: TokenQuota,
    principal: Principal,
    admitted: AdmittedCall,
    result: GenerationResult,
    entry: CompletedEntry,
    seal: AuditorSeal | None,
    now: datetime,
    on_logged: LogHook | None,
) -> None:
    """One transaction: the ``generation.completed`` entry, its call tags, the sealed traces,
    the refund of what was charged and not used, and ``on_logged``'s rows. Sets
    ``result.log_index`` (and ``attached``) only once committed."""
    ref = admitted.model.ref
    config = admitted.loaded.extras["config"]
    fields, digests, sealed = entry.fields, entry.digests, entry.sealed
    with session_scope(engine) as session:
        index = record_event(
            session,
            action="generation.completed",
            actor=Actor.of(principal),
            resource=f"model:{ref.name}",
            now=now,
            org_id=admitted.model.org_id,
            fields=fields,
        )
        record_choices(
            session,
            call_id=admitted.call_id,
            key_id=config.key_id,
            choices=[CallChoice(i, p, digests[i]) for i, p in enumerate(admitted.payloads)],
            log_index=index,
            user_id=principal.user_id,
            release_id=ref.release_id,
            tier=ref.tier,
            now=now,
        )
        if seal is not None and sealed:
            store_sealed(
                session,
                call_id=admitted.call_id,
                org_id=admitted.model.org_id,
                log_index=index,
                key_id=seal.key_id,
                sealed=sealed,
                now=now,
            )
        unused = admitted.charged - admitted.encoded.tokens - entry.completion_tokens
        quota.refund(session, principal.user_id, unused, admitted.window)
        logged = replace(result, log_index=index, logged_at=entry_time(now))
        if on_logged is not None:
            logged.attached = on_logged(session, logged)
    # Only once committed: a failed hook leaves the call unlogged, and says so.
    result.log_index, result.logged_at, result.attached = (
        index,
        logged.logged_at,
        logged.attached,
    )
