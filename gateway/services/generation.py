"""Generation use cases: resolve a model name, admit the call (quota, call tags), generate with
the watermark, and log it as ``generation.completed`` with its call tags.

Every database step runs in a worker thread with its own short transaction; generation runs
on the batcher's dedicated executor; the event loop only waits.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.engine import session_scope
from gateway.errors import ValidationFailed
from gateway.generation.batcher import MicroBatcher
from gateway.generation.calls import (
    CallChoice,
    ensure_key_record,
    new_call_id,
    record_choices,
    reserve_payloads,
)
from gateway.generation.keys import derive_watermark_key, watermark_config_for
from gateway.generation.models import LoadedModel, ModelCache, ModelRef, resolve_model
from gateway.generation.sampler import Choice, SampleJob, SamplingParams, apply_stop, run_jobs
from gateway.ledger.events import Actor, digest_of, record_event
from gateway.services.ratelimit import RateLimited
from gateway.state import GatewayState

__all__ = [
    "GenerationInput",
    "GenerationResult",
    "GenerationService",
]

_QUOTA_WINDOW = 60
_CHARGE = text(
    "INSERT INTO rate_limits (bucket, window_start, count) VALUES (:bucket, :window, :n) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_limits.count + :n "
    "RETURNING count"
)
_REFUND = text(
    "UPDATE rate_limits SET count = count - :n WHERE bucket = :bucket AND window_start = :window"
)
_PRUNE = text("DELETE FROM rate_limits WHERE bucket = :bucket AND window_start < :window")


class NoChatTemplate(ValidationFailed):
    code = "no_chat_template"
    title = "Model has no chat template"


class PromptTooLong(ValidationFailed):
    code = "prompt_too_long"
    title = "Prompt too long"


@dataclass(frozen=True)
class GenerationInput:
    model: str
    params: SamplingParams
    n: int = 1
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    endpoint: str = "completions"


@dataclass
class GenerationResult:
    call_id: str
    created: int
    model: str
    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int
    watermark_key_id: str
    payloads: list[int]
    log_index: int | None = None
    tokenizer: Any = field(default=None, repr=False)


@dataclass
class _Admitted:
    call_id: str
    ref: ModelRef
    org_id: int
    loaded: LoadedModel
    prompt_ids: list[int]
    prompt_digest: str
    payloads: list[int]
    charged: int
    window: int


class GenerationService:
    """The generation runtime of one gateway process: model cache, batcher, executor."""

    def __init__(self, state: GatewayState, *, cache: ModelCache | None = None) -> None:
        settings = state.settings
        self.state = state
        self.engine: Engine = state.engine
        self.cache = cache or ModelCache(
            settings.data_dir / "model-cache", state.blobs, settings.generation_model_cache_bytes
        )
        # One thread: generate() already uses every core, and one owner of torch's global RNG
        # makes seeds reproducible.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-generate")
        self.batcher = MicroBatcher(
            run_jobs_for_service,
            self.executor,
            window_seconds=settings.generation_batch_window_ms / 1000.0,
            max_rows=settings.generation_max_batch,
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ steps

    def _load(self, principal: Principal, request: GenerationInput, now: datetime) -> _Admitted:
        settings = self.state.settings
        with session_scope(self.engine) as session:
            release, ref = resolve_model(session, principal, request.model, now, for_use=True)
        loaded = self.cache.get(ref)
        self._ensure_watermark(loaded)
        prompt_ids, prompt_digest = self._encode(loaded, request)
        if len(prompt_ids) > settings.generation_max_prompt_tokens:
            raise PromptTooLong(
                f"the prompt has {len(prompt_ids)} tokens; at most "
                f"{settings.generation_max_prompt_tokens} are accepted"
            )
        charged = len(prompt_ids) + request.params.max_tokens * request.n
        config = loaded.extras["config"]
        # One short transaction: quota charge, key registration (first use), call tags. A
        # refused quota rolls the rest back with it.
        with self.engine.begin() as connection:
            window = self._charge(connection, principal, charged, now)
            if not loaded.extras.get("registered"):
                ensure_key_record(
                    connection,
                    key_id=config.key_id,
                    release_id=ref.release_id,
                    tier=ref.tier,
                    config_json=config.to_json(),
                    now=now,
                )
            payloads = reserve_payloads(
                connection, config.key_id, request.n, settings.watermark_payload_bits
            )
        loaded.extras["registered"] = True
        return _Admitted(
            new_call_id(),
            ref,
            release.org_id,
            loaded,
            prompt_ids,
            prompt_digest,
            payloads,
            charged,
            window,
        )

    def _ensure_watermark(self, loaded: LoadedModel) -> None:
        if "config" in loaded.extras:
            return
        ref = loaded.ref
        key = derive_watermark_key(
            self.state.keyring.watermark_master_key, ref.repo_id, ref.version, ref.tier
        )
        settings = self.state.settings
        loaded.extras["key"] = key
        loaded.extras["config"] = watermark_config_for(
            key,
            loaded.vocab_size,
            loaded.tokenizer,
            delta=settings.watermark_delta,
            payload_bits=settings.watermark_payload_bits,
        )

    @staticmethod
    def _encode(loaded: LoadedModel, request: GenerationInput) -> tuple[list[int], str]:
        tokenizer = loaded.tokenizer
        if request.messages is not None:
            if not getattr(tokenizer, "chat_template", None):
                raise NoChatTemplate(
                    f"{loaded.ref.name} has no chat template; use /v1/completions with a prompt"
                )
            ids = tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
            if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding anyway
                ids = ids["input_ids"]
            digest = digest_of(json.dumps(request.messages, sort_keys=True, ensure_ascii=False))
            return [int(i) for i in ids], digest
        prompt = request.prompt or ""
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if not ids:  # an empty prompt starts from the beginning-of-text token
            start = tokenizer.bos_token_id
            ids = [start if start is not None else tokenizer.eos_token_id]
        return [int(i) for i in ids], digest_of(prompt)

    def _charge(
        self, connection: Connection, principal: Principal, tokens: int, now: datetime
    ) -> int:
        """Charge ``tokens`` to the account's minute; raising rolls the caller's transaction."""
        limit = self.state.settings.generation_tokens_per_minute
        epoch = int(now.timestamp())
        window = epoch - epoch % _QUOTA_WINDOW
        bucket = f"gen_tokens:{principal.user_id}"
        connection.execute(_PRUNE, {"bucket": bucket, "window": window})
        count = int(
            connection.execute(
                _CHARGE, {"bucket": bucket, "window": window, "n": tokens}
            ).scalar_one()
        )
        if count > limit:
            retry = max(1, window + _QUOTA_WINDOW - epoch)
            raise RateLimited(
                f"token quota of {limit} per minute reached (this call may use {tokens}); "
                f"try again in {retry} s",
                headers={"Retry-After": str(retry)},
                extra={"retry_after": retry, "quota_tokens_per_minute": limit},
            )
        return window

    def _refund(
        self, principal: Principal, tokens: int, window: int, db: Session | None = None
    ) -> None:
        """Give back what a call charged but did not use (or everything, if it failed)."""
        if tokens <= 0:
            return
        values = {"bucket": f"gen_tokens:{principal.user_id}", "window": window, "n": tokens}
        if db is not None:
            db.execute(_REFUND, values)
            return
        with self.engine.begin() as connection:
            connection.execute(_REFUND, values)

    def _record(
        self,
        principal: Principal,
        request: GenerationInput,
        admitted: _Admitted,
        choices: list[Choice],
        now: datetime,
    ) -> int:
        ref = admitted.ref
        config = admitted.loaded.extras["config"]
        retain = self.state.settings.generation_retain_plaintext
        params = request.params
        outputs = []
        for index, (choice, payload) in enumerate(zip(choices, admitted.payloads, strict=True)):
            output: dict[str, Any] = {
                "index": index,
                "payload": payload,
                "sha256": digest_of(choice.text),
                "tokens": len(choice.token_ids),
                "finish_reason": choice.finish_reason,
            }
            if retain:
                output["text"] = choice.text
            outputs.append(output)
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
            "watermark": {"config": config.to_json(), "key_id": config.key_id},
            "sampling": {
                "max_tokens": params.max_tokens,
                "temperature": repr(params.temperature),
                "top_p": repr(params.top_p),
                "n": request.n,
                "stop": list(params.stop),
                "seed": params.seed,
                "logprobs": params.logprobs,
            },
            "usage": {
                "prompt_tokens": len(admitted.prompt_ids),
                "completion_tokens": sum(len(c.token_ids) for c in choices),
            },
            "prompt_sha256": admitted.prompt_digest,
            "outputs": outputs,
        }
        if retain:
            fields["prompt"] = (
                request.prompt
                if request.messages is None
                else json.dumps(request.messages, ensure_ascii=False)
            )
        with session_scope(self.engine) as session:
            index = record_event(
                session,
                action="generation.completed",
                actor=Actor.of(principal),
                resource=f"model:{ref.name}",
                now=now,
                org_id=admitted.org_id,
                fields=fields,
            )
            record_choices(
                session,
                call_id=admitted.call_id,
                key_id=config.key_id,
                choices=[CallChoice(i, p) for i, p in enumerate(admitted.payloads)],
                log_index=index,
                user_id=principal.user_id,
                release_id=ref.release_id,
                tier=ref.tier,
                now=now,
            )
            used = len(admitted.prompt_ids) + sum(len(c.token_ids) for c in choices)
            self._refund(principal, admitted.charged - used, admitted.window, session)
        return index

    def _result(self, admitted: _Admitted, choices: list[Choice]) -> GenerationResult:
        return GenerationResult(
            call_id=admitted.call_id,
            created=int(time.time()),
            model=admitted.ref.name,
            choices=choices,
            prompt_tokens=len(admitted.prompt_ids),
            completion_tokens=sum(len(c.token_ids) for c in choices),
            watermark_key_id=admitted.loaded.extras["config"].key_id,
            payloads=admitted.payloads,
            tokenizer=admitted.loaded.tokenizer,
        )

    # ------------------------------------------------------------------ public

    async def complete(
        self, principal: Principal, request: GenerationInput, now: datetime
    ) -> GenerationResult:
        admitted = await asyncio.to_thread(self._load, principal, request, now)
        job = SampleJob(admitted.prompt_ids, request.params, admitted.payloads)
        try:
            choices = await self.batcher.submit(admitted.loaded, job)
        except BaseException:
            job.cancel.set()
            await asyncio.to_thread(self._refund, principal, admitted.charged, admitted.window)
            raise
        result = self._result(admitted, choices)
        result.log_index = await asyncio.to_thread(
            self._record, principal, request, admitted, choices, now
        )
        return result

    async def stream(
        self, principal: Principal, request: GenerationInput, now: datetime
    ) -> tuple[str, str, AsyncIterator[str | GenerationResult]]:
        """(call id, model name, text deltas ending with the logged result).

        Admission (model, grant, quota, prompt checks) happens here, before the response
        starts, so its errors are still plain problem+json answers.
        """
        admitted = await asyncio.to_thread(self._load, principal, request, now)
        events = self._stream_events(principal, request, admitted, now)
        return admitted.call_id, admitted.ref.name, events

    async def _stream_events(
        self, principal: Principal, request: GenerationInput, admitted: _Admitted, now: datetime
    ) -> AsyncIterator[str | GenerationResult]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | None] = asyncio.Queue()

        def on_token(token: int | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, token)

        job = SampleJob(admitted.prompt_ids, request.params, admitted.payloads, on_token=on_token)
        task = asyncio.ensure_future(self.batcher.submit(admitted.loaded, job))
        tokenizer = admitted.loaded.tokenizer
        stop = request.params.stop
        # Text that might be the start of a stop sequence is held back until it is not.
        hold = max((len(s) for s in stop), default=1) - 1
        eos = tokenizer.eos_token_id
        ids: list[int] = []
        sent = ""
        finished = False
        try:
            while True:
                token = await queue.get()
                if token is None or token == eos:
                    break
                ids.append(token)
                text, stopped = apply_stop(tokenizer.decode(ids, skip_special_tokens=True), stop)
                if stopped:
                    job.cancel.set()
                ready = text if stopped else text[: len(text) - hold] if hold else text
                # An incomplete UTF-8 sequence decodes to U+FFFD until its last byte arrives.
                ready = ready if stopped else ready.rstrip("\ufffd")
                if len(ready) > len(sent) and ready.startswith(sent):
                    yield ready[len(sent) :]
                    sent = ready
                if stopped:
                    break
            choices = await task
            finished = True
        finally:
            if not finished:
                job.cancel.set()
                # The stream was dropped: its quota charge is returned once generation ends.
                task.add_done_callback(
                    lambda _: loop.run_in_executor(
                        None, self._refund, principal, admitted.charged, admitted.window
                    )
                )
        final = choices[0].text
        if final.startswith(sent) and len(final) > len(sent):
            yield final[len(sent) :]
        result = self._result(admitted, choices)
        result.log_index = await asyncio.to_thread(
            self._record, principal, request, admitted, choices, now
        )
        yield result


def run_jobs_for_service(loaded: LoadedModel, jobs: list[SampleJob]) -> list[list[Choice]]:
    return run_jobs(loaded, loaded.extras["config"], loaded.extras["key"], jobs)
