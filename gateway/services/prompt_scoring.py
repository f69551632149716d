"""Scoring calls: the log-likelihood of each prompt token (``/v1/completions`` with ``echo``,
``logprobs`` and ``max_tokens=0``), the request evaluation harnesses score multiple choice with.

Such a call is authenticated, resolved and charged like a generation (by its prompt tokens)
and logged, as ``generation.scored``: a distinct kind because nothing was sampled, so there is
no output text, no watermark and no call tag, and every reader of ``generation.completed``
(detection, reports, explanations) assumes all three. The entry commits to each prompt's
logprobs by sha256 (:func:`~gateway.generation.prompt_logprobs.logprobs_digest`), so a score
computed from them can be checked against the log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.auth.principal import Principal
from gateway.db.engine import session_scope
from gateway.generation.calls import new_call_id
from gateway.generation.models import LoadedModel
from gateway.generation.prompt_logprobs import logprobs_digest, score_prompts
from gateway.generation.prompts import (
    ContextLengthExceeded,
    EncodedPrompts,
    Prompt,
    encode_prompts,
)
from gateway.generation.upstream import VllmPool
from gateway.ledger.events import Actor, record_event
from gateway.services.engine_scoring import remote_prompt_logprobs
from gateway.services.generation import GenerationService
from gateway.services.models import resolve_model

__all__ = ["SCORED_ACTION", "PromptScoring", "ScoringResult"]

SCORED_ACTION = "generation.scored"


@dataclass
class ScoringResult:
    call_id: str
    created: int
    model: str
    scored: list[dict[str, Any]]  # by prompt index: the OpenAI legacy logprobs object
    digests: list[str]  # logprobs_digest of each
    prompt_tokens: int
    tokenizer: Any
    log_index: int


class PromptScoring:
    """Prompt log-likelihoods through the generation runtime (its model cache, its quota and
    its single torch thread)."""

    def __init__(self, generation: GenerationService) -> None:
        self.generation = generation

    def _admit(
        self, principal: Principal, model: str, prompts: list[Prompt], now: datetime
    ) -> tuple[int | None, LoadedModel, EncodedPrompts, VllmPool | None]:
        service = self.generation
        with session_scope(service.engine) as session:
            release, ref = resolve_model(session, principal, model, now, for_use=True)
            org_id = release.org_id
        pool = service.engines.pool_for(ref)
        # A remote engine's tier needs only its tokenizer and config here, never its weights.
        loaded = service.cache.engine_view(ref) if pool is not None else service.cache.get(ref)
        encoded = encode_prompts(
            loaded.tokenizer,
            model=ref.name,
            vocab_size=loaded.vocab_size,
            prompts=prompts,
            max_prompt_tokens=service.state.settings.generation_max_prompt_tokens,
        )
        context = loaded.context_length
        if pool is not None and pool.max_model_len is not None:
            context = min(context or pool.max_model_len, pool.max_model_len)
        longest = max(len(p) for p in encoded.prompts)
        if context is not None and longest > context:
            raise ContextLengthExceeded(
                f"{ref.name}'s maximum context length is {context} tokens; the prompt has "
                f"{longest}. Shorten the prompt.",
                extra={"param": "prompt"},
            )
        with service.engine.begin() as connection:
            service.quota.charge(connection, principal.user_id, encoded.tokens, now)
        return org_id, loaded, encoded, pool

    async def score(
        self,
        principal: Principal,
        *,
        model: str,
        prompts: list[Prompt],
        top_k: int,
        metadata: dict[str, str] | None,
        now: datetime,
    ) -> ScoringResult:
        org_id, loaded, encoded, pool = await asyncio.to_thread(
            self._admit, principal, model, prompts, now
        )
        ids, tokens = encoded.prompts, encoded.tokens
        if pool is not None:
            scored = await remote_prompt_logprobs(pool, self.generation.engine_canary, ids, top_k)
        else:
            loop = asyncio.get_running_loop()
            # On the generation executor: the one thread that owns the local models' torch work.
            scored = await loop.run_in_executor(
                self.generation.executor, score_prompts, loaded.model, ids, top_k
            )
        wire = [s.to_wire(loaded.tokenizer) for s in scored]
        digests = [logprobs_digest(w) for w in wire]
        call_id = new_call_id()
        ref = loaded.ref
        fields: dict[str, Any] = {
            "call_id": call_id,
            "endpoint": "completions",
            "model": {
                "repo_id": ref.repo_id,
                "version": ref.version,
                "tier": ref.tier,
                "release_digest": ref.statement_digest,
                "tier_manifest_digest": ref.manifest_digest,
            },
            "watermark": None,  # nothing is sampled
            "sampling": {"echo": True, "max_tokens": 0, "logprobs": top_k},
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0},
            "prompt_sha256": encoded.digest,
            "prompt_sha256s": encoded.digests,
            "scores": [
                {"prompt_index": i, "logprobs_sha256": d, "tokens": len(s.token_ids)}
                for i, (d, s) in enumerate(zip(digests, scored, strict=True))
            ],
        }
        if metadata:
            fields["metadata"] = dict(metadata)

        def log() -> int:
            with session_scope(self.generation.engine) as session:
                return record_event(
                    session,
                    action=SCORED_ACTION,
                    actor=Actor.of(principal),
                    resource=f"model:{ref.name}",
                    now=now,
                    org_id=org_id,
                    fields=fields,
                )

        index = await asyncio.to_thread(log)
        return ScoringResult(
            call_id=call_id,
            created=int(now.timestamp()),
            model=ref.name,
            scored=wire,
            digests=digests,
            prompt_tokens=tokens,
            tokenizer=loaded.tokenizer,
            log_index=index,
        )
