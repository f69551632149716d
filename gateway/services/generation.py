"""Generation use cases: resolve a model name, admit the call (quota, call tags), generate with
the watermark, and log it as ``generation.completed`` with its call tags.

A call costs two short transactions: admission (re-check the cached model resolution, charge
the quota, draw the call tags) and the log append (entry, call tags, refund, and whatever the
caller's :data:`LogHook` writes: the Content Credentials). Each runs in a worker thread;
generation runs on the batcher's dedicated executor; the event loop only waits. Admission is
:mod:`gateway.services.generation_admission`; this module holds the generation paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from gateway.auth.principal import Principal
from gateway.db.engine import session_scope
from gateway.errors import GatewayError
from gateway.generation.batcher import MicroBatcher
from gateway.generation.deltas import StreamTexts
from gateway.generation.engines import EngineSpec, load_engines_file
from gateway.generation.models import LoadedModel, ModelCache
from gateway.generation.prompts import (
    ContextLengthExceeded,
    NoChatTemplate,
    Prompt,
    PromptTooLong,
)
from gateway.generation.sampler import Choice, SampleJob, run_jobs
from gateway.generation.upstream import CanaryDeferred, Replica, VllmPool
from gateway.services.admission import ModelRefCache, TokenQuota
from gateway.services.engines import (
    EngineRouter,
    engine_bodies,
    remote_choices,
    remote_stream,
    run_canary,
)
from gateway.services.generation_admission import CallAdmission
from gateway.services.generation_log import completed_entry, write_completed
from gateway.services.generation_streams import ensure_call_watermark, split_reasoning_stream
from gateway.services.generation_types import (
    AdmittedCall,
    GenerationInput,
    GenerationObserver,
    GenerationResult,
    LogHook,
    StreamEvent,
    StreamPiece,
    build_result,
)
from gateway.services.models import resolve_model
from gateway.services.safety import SafetyService
from gateway.services.sealed_reasoning import auditor_seal_for
from gateway.state import GatewayState
from safety.policy import GuardRef

__all__ = [
    "ContextLengthExceeded",
    "GenerationInput",
    "GenerationResult",
    "GenerationService",
    "LogHook",
    "NoChatTemplate",
    "Prompt",
    "PromptTooLong",
    "StreamEvent",
    "StreamPiece",
]


# How far a regenerated choice's seed moves (any fixed offset: choices of one call use +k).
_RESEED = 1_000_003


class GenerationService:
    """The generation runtime of one gateway process: model cache, batcher, executor."""

    def __init__(
        self,
        state: GatewayState,
        *,
        cache: ModelCache | None = None,
        engines: list[EngineSpec] | None = None,
        observer: GenerationObserver | None = None,
    ) -> None:
        """``observer``: told of every logged call and safety scan (the gateway's metrics)."""
        settings = state.settings
        self.observer = observer
        self.state = state
        self.engine: Engine = state.engine
        self.cache = cache or ModelCache(
            settings.data_dir / "model-cache", state.blobs, settings.generation_model_cache_bytes
        )
        self.refs = ModelRefCache()
        self.quota = TokenQuota(settings.generation_tokens_per_minute)
        # One thread: generate() already uses every core, and one owner of torch's global RNG
        # makes seeds reproducible.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-generate")
        self.batcher = MicroBatcher(
            run_jobs_for_service,
            self.executor,
            window_seconds=settings.generation_batch_window_ms / 1000.0,
            max_rows=settings.generation_max_batch,
        )

        if engines is None and settings.engines_file is not None:
            engines = load_engines_file(settings.engines_file)
        self.engines = EngineRouter(
            engines or [],
            health_interval_s=settings.engine_health_interval_seconds,
            canary_interval_s=settings.engine_canary_interval_seconds,
        )
        self.safety = SafetyService(
            state.engine,
            guard_loader=self._load_guard,
            on_scan=None if observer is None else observer.record_safety_scan,
        )
        self.admission = CallAdmission(
            state,
            cache=self.cache,
            engines=self.engines,
            safety=self.safety,
            refs=self.refs,
            quota=self.quota,
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        await self.engines.aclose()
        self.close()

    def engine_status(self) -> list[dict[str, Any]]:
        """Every remote engine pool and the state of its replicas (for readiness)."""
        return self.engines.status()

    # ------------------------------------------------------------------ engines

    def engine_model(self, pool: VllmPool) -> LoadedModel:
        """The tier a pool serves, with its watermark (resolved without a caller: the canary
        is the gateway's own request)."""
        with session_scope(self.engine) as session:
            _, ref = resolve_model(session, None, pool.model, _utcnow(), for_use=False)
        view = self.cache.engine_view(ref)
        ensure_call_watermark(self.engine, self.state, view)
        return view

    async def _canary(self, pool: VllmPool, replica: Replica) -> str | None:
        try:
            view = await asyncio.to_thread(self.engine_model, pool)
        except GatewayError as exc:
            # Not the engine's fault (the release may not be published yet): check it again
            # on the next call rather than refusing it until the next health check.
            reason = f"the gateway cannot serve {pool.model} yet: {exc.message}"
            raise CanaryDeferred(reason) from exc
        return await run_canary(pool, replica, view)

    # The same canary for other services' engine calls (prompt scoring), so a replica they
    # pick is admitted by the one rule.
    engine_canary = _canary

    async def check_engines(self) -> None:
        """Check every replica now (start-up: before any call needs them)."""
        await asyncio.gather(
            *(
                pool.check(replica, self._canary)
                for pool in self.engines.pools.values()
                for replica in pool.replicas
            )
        )

    # ------------------------------------------------------------------ the log

    def _record(
        self,
        principal: Principal,
        request: GenerationInput,
        admitted: AdmittedCall,
        result: GenerationResult,
        now: datetime,
        on_logged: LogHook | None,
    ) -> None:
        """One transaction: the ``generation.completed`` entry, its call tags, the refund, and
        ``on_logged``'s rows. Sets ``result.log_index`` (and ``attached``) once committed."""
        # The org's auditor key, if any: traces are sealed to it before the transaction.
        seal = (
            None
            if admitted.markers is None
            else auditor_seal_for(self.engine, admitted.model.org_id)
        )
        entry = completed_entry(
            request,
            admitted,
            result,
            retain=self.state.settings.generation_retain_plaintext,
            seal=seal,
            safety_fields=(
                None if admitted.scanner is None else self.safety.log_fields(admitted.scanner)
            ),
        )
        write_completed(
            self.engine, self.quota, principal, admitted, result, entry, seal, now, on_logged
        )
        if self.observer is not None:
            self.observer.record_generation(admitted.model.ref.name, result.completion_tokens)

    def _result(
        self,
        admitted: AdmittedCall,
        choices: list[Choice],
        safety: list[dict[str, Any]] | None = None,
    ) -> GenerationResult:
        return build_result(admitted, choices, safety)

    # ------------------------------------------------------------------ public

    async def complete(
        self,
        principal: Principal,
        request: GenerationInput,
        now: datetime,
        *,
        on_logged: LogHook | None = None,
    ) -> GenerationResult:
        admitted = await asyncio.to_thread(self.admission.admit, principal, request, now)
        job = SampleJob(admitted.encoded.prompts, admitted.params, admitted.payloads)
        try:
            if admitted.pool is not None:
                choices = await remote_choices(
                    admitted.pool,
                    self._canary,
                    self._bodies(admitted),
                    admitted.loaded.tokenizer,
                    admitted.params,
                )
            else:
                choices = await self.batcher.submit(admitted.loaded, job)
            safety = None
            if admitted.scanner is not None:
                choices, safety = await self.safety.enforce(
                    admitted.scanner, choices, lambda again: self._regenerate(admitted, again)
                )
        except BaseException:
            job.cancel.set()
            await asyncio.to_thread(
                self.admission.refund, principal, admitted.charged, admitted.window
            )
            raise
        result = self._result(admitted, choices, safety)
        await asyncio.to_thread(self._record, principal, request, admitted, result, now, on_logged)
        return result

    async def stream(
        self,
        principal: Principal,
        request: GenerationInput,
        now: datetime,
        *,
        on_logged: LogHook | None = None,
    ) -> tuple[str, str, AsyncIterator[StreamEvent]]:
        """(call id, model name, (choice index, text) pieces ending with the logged result).

        Admission (model, grant, quota, prompt checks) happens here, before the response
        starts, so its errors are still plain problem+json answers.
        """
        admitted = await asyncio.to_thread(self.admission.admit, principal, request, now)
        if admitted.pool is not None:
            try:
                await admitted.pool.ensure_available(self._canary)
            except BaseException:
                await asyncio.to_thread(
                    self.admission.refund, principal, admitted.charged, admitted.window
                )
                raise
            events = self._remote_events(principal, request, admitted, now, on_logged)
        else:
            events = self._stream_events(principal, request, admitted, now, on_logged)
        if admitted.scanner is not None:
            admitted.stream_safety = self.safety.stream(admitted.scanner, len(admitted.payloads))
            events = admitted.stream_safety.wrap(events, StreamPiece)
        if admitted.markers is not None:
            events = split_reasoning_stream(events, admitted.markers, admitted.inside)
        return admitted.call_id, admitted.model.ref.name, events

    async def _regenerate(self, admitted: AdmittedCall, indices: list[int]) -> list[Choice]:
        """The choices at ``indices`` drawn once more (the safety policy's ``regenerate``),
        with their own call tags; a seeded call moves its seed, or it would repeat itself."""
        n = len(admitted.payloads) // len(admitted.encoded.prompts)
        prompts = [admitted.encoded.prompts[i // n] for i in indices]
        payloads = [admitted.payloads[i] for i in indices]
        seed = admitted.params.seed
        params = replace(admitted.params, seed=None if seed is None else seed + _RESEED)
        if admitted.pool is None:
            return await self.batcher.submit(admitted.loaded, SampleJob(prompts, params, payloads))
        bodies = engine_bodies(
            admitted.pool,
            prompts=prompts,
            params=params,
            key_id=admitted.loaded.extras["config"].key_id,
            payloads=payloads,
        )
        tokenizer = admitted.loaded.tokenizer
        return await remote_choices(admitted.pool, self._canary, bodies, tokenizer, params)

    def _load_guard(self, guard: GuardRef) -> Any:
        """A guard release's check, only once its tier verified against the publisher's
        signature (the model cache's materialize, as for every served model)."""
        from gateway.services.safety_guard import GuardCheck, check_guard_pin

        with session_scope(self.engine) as session:
            _, ref = resolve_model(session, None, guard.release, _utcnow(), for_use=True)
        check_guard_pin(guard, ref.statement_digest)
        return GuardCheck(self.cache.materialize(ref))

    def _bodies(self, admitted: AdmittedCall) -> list[dict[str, Any]]:
        assert admitted.pool is not None
        return engine_bodies(
            admitted.pool,
            prompts=admitted.encoded.prompts,
            params=admitted.params,
            key_id=admitted.loaded.extras["config"].key_id,
            payloads=admitted.payloads,
        )

    async def _remote_events(
        self,
        principal: Principal,
        request: GenerationInput,
        admitted: AdmittedCall,
        now: datetime,
        on_logged: LogHook | None,
    ) -> AsyncIterator[StreamEvent]:
        assert admitted.pool is not None
        pieces = remote_stream(
            admitted.pool, self._canary, self._bodies(admitted), admitted.loaded.tokenizer
        )
        choices: list[Choice] | None = None
        try:
            async for piece in pieces:
                if isinstance(piece, list):
                    choices = piece
                else:
                    yield StreamPiece(*piece)
        finally:
            await pieces.aclose()  # closes every engine stream of the call
            if choices is None:
                # Dropped by the client, or the engine failed: the charge goes back.
                asyncio.get_running_loop().run_in_executor(
                    None, self.admission.refund, principal, admitted.charged, admitted.window
                )
        if choices is None:  # remote_stream ends with the choices or raises
            raise AssertionError("engine stream ended without its choices")
        result = self._result(admitted, choices)
        await asyncio.to_thread(self._record, principal, request, admitted, result, now, on_logged)
        yield result

    async def _stream_events(
        self,
        principal: Principal,
        request: GenerationInput,
        admitted: AdmittedCall,
        now: datetime,
        on_logged: LogHook | None,
    ) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[int] | None] = asyncio.Queue()

        def on_token(tokens: list[int] | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, tokens)

        job = SampleJob(
            admitted.encoded.prompts, admitted.params, admitted.payloads, on_token=on_token
        )
        task = asyncio.ensure_future(self.batcher.submit(admitted.loaded, job))
        texts = StreamTexts(admitted.loaded.tokenizer, len(admitted.payloads), admitted.params.stop)
        finished = False
        try:
            # Stop sequences end their rows inside generate (sampler.RowStops) at the step
            # that shows them here too, so reading on to the end costs no extra tokens.
            while (tokens := await queue.get()) is not None:
                for index, text in texts.step(tokens):
                    yield StreamPiece(index, text)
            choices = await task
            finished = True
        finally:
            if not finished:
                job.cancel.set()
                # The stream was dropped: its quota charge is returned once generation ends.
                task.add_done_callback(
                    lambda _: loop.run_in_executor(
                        None, self.admission.refund, principal, admitted.charged, admitted.window
                    )
                )
        for choice, sent in zip(choices, texts.choices, strict=True):
            rest = sent.rest(choice.text)
            if rest:
                yield StreamPiece(sent.index, rest)
        result = self._result(admitted, choices)
        await asyncio.to_thread(self._record, principal, request, admitted, result, now, on_logged)
        yield result


def _utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def run_jobs_for_service(loaded: LoadedModel, jobs: list[SampleJob]) -> list[list[Choice]]:
    return run_jobs(loaded, loaded.extras["config"], loaded.extras["key"], jobs)
