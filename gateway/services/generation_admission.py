"""A generation call's admission: its model name resolved (or the cached resolution re-checked),
its prompts encoded and fitted to the context, its quota charged and its call tags drawn, in one
short transaction; and the refund when the call fails or its stream is dropped.

The resolution cache and the quota are :mod:`gateway.services.admission`; this is the step of
:class:`~gateway.services.generation.GenerationService` that uses them, kept apart so the
service module holds the generation paths.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from gateway.auth.principal import Principal
from gateway.db.engine import session_scope
from gateway.errors import ServiceUnavailable
from gateway.generation.calls import ensure_key_record, new_call_id, reserve_payloads
from gateway.generation.models import LoadedModel, ModelCache, ModelRef, parse_model_name
from gateway.generation.prompts import encode_prompts, fit_context
from gateway.generation.reasoning import markers_for
from gateway.services.admission import CachedModel, ModelRefCache, TokenQuota, still_usable
from gateway.services.engines import EngineRouter
from gateway.services.generation_streams import ensure_call_watermark
from gateway.services.generation_types import AdmittedCall, GenerationInput
from gateway.services.models import resolve_model
from gateway.services.safety import SafetyService
from gateway.state import GatewayState

__all__ = ["CallAdmission"]

# How many times a call resolves its model afresh when the cached resolution went stale
# between the read and the admission transaction, before it is refused as unavailable.
_ATTEMPTS = 3


class _Stale(Exception):
    """The cached resolution of a model name no longer holds: resolve it afresh."""


class CallAdmission:
    """Admits the calls of one gateway process: the service's model cache, engine router,
    safety service, resolution cache and quota, shared with the rest of the service."""

    def __init__(
        self,
        state: GatewayState,
        *,
        cache: ModelCache,
        engines: EngineRouter,
        safety: SafetyService,
        refs: ModelRefCache,
        quota: TokenQuota,
    ) -> None:
        self.state = state
        self.engine = state.engine
        self.cache = cache
        self.engines = engines
        self.safety = safety
        self.refs = refs
        self.quota = quota

    def admit(self, principal: Principal, request: GenerationInput, now: datetime) -> AdmittedCall:
        """The call past admission (blocking: runs in a worker thread), or the precise
        refusal (model, grant, prompt, context, quota)."""
        entry = self.refs.get(request.model)
        for _ in range(_ATTEMPTS):
            loaded = self._in_memory(entry.ref) if entry is not None else None
            if entry is None or loaded is None:
                # Not cached, or its model left memory: the full checks run before any load.
                entry = self._resolve(principal, request.model, now)
                loaded = self._model(entry.ref)
            try:
                return self._admit_with(principal, request, entry, loaded, now)
            except _Stale:
                self.refs.forget(request.model)
                entry = None
        raise ServiceUnavailable(f"{request.model} changed during the call; try again")

    def refund(self, principal: Principal, tokens: int, window: int) -> None:
        """Give back everything a call charged (it failed, or its stream was dropped)."""
        if tokens > 0:
            with self.engine.begin() as connection:
                self.quota.refund(connection, principal.user_id, tokens, window)

    def _in_memory(self, ref: ModelRef) -> LoadedModel | None:
        if self.engines.pool_for(ref) is not None:
            return self.cache.engine_view(ref)  # tokenizer and config: cheap once built
        return self.cache.loaded(ref)

    def _model(self, ref: ModelRef) -> LoadedModel:
        if self.engines.pool_for(ref) is not None:
            return self.cache.engine_view(ref)
        return self.cache.get(ref)

    def _resolve(self, principal: Principal, name: str, now: datetime) -> CachedModel:
        """Resolve ``name`` from scratch (raising the precise refusal) and cache the answer."""
        with session_scope(self.engine) as session:
            release, ref = resolve_model(session, principal, name, now, for_use=True)
        entry = CachedModel(
            ref=ref,
            org_id=release.org_id,
            release_name=release.name,
            pinned=parse_model_name(name)[1] is not None,
            gated=ref.gated,
        )
        self.refs.put(name, entry)
        return entry

    def _admit_with(
        self,
        principal: Principal,
        request: GenerationInput,
        entry: CachedModel,
        loaded: LoadedModel,
        now: datetime,
    ) -> AdmittedCall:
        settings = self.state.settings
        ensure_call_watermark(self.engine, self.state, loaded)
        encoded = encode_prompts(
            loaded.tokenizer,
            model=loaded.ref.name,
            vocab_size=loaded.vocab_size,
            prompts=request.prompts,
            messages=request.messages,
            max_prompt_tokens=settings.generation_max_prompt_tokens,
        )
        pool = self.engines.pool_for(entry.ref)
        context = loaded.context_length
        if pool is not None and pool.max_model_len is not None:
            context = min(context or pool.max_model_len, pool.max_model_len)
        max_tokens = fit_context(
            encoded,
            request.params.max_tokens,
            context_length=context,
            explicit=request.max_tokens_explicit,
            model=loaded.ref.name,
        )
        params = replace(request.params, max_tokens=max_tokens)
        # Before any charge: a policy whose checks cannot load fails the call here.
        scanner = self.safety.scanner_for(entry.ref.release_id)
        choices = len(encoded.prompts) * request.n
        charged = encoded.tokens + max_tokens * choices
        config = loaded.extras["config"]
        # One short transaction: quota charge, key registration (first use), call tags, and
        # the re-check of the cached resolution. Writes first: on SQLite the first write takes
        # the database lock, so the re-check reads what every writer has committed. Anything
        # refused or stale rolls the whole of it back.
        with self.engine.begin() as connection:
            window = self.quota.charge(connection, principal.user_id, charged, now)
            if not loaded.extras.get("registered"):
                ensure_key_record(
                    connection,
                    key_id=config.key_id,
                    release_id=entry.ref.release_id,
                    tier=entry.ref.tier,
                    config_json=loaded.extras["config_json"],
                    now=now,
                )
            payloads = reserve_payloads(
                connection, config.key_id, choices, settings.watermark_payload_bits
            )
            if not still_usable(connection, entry, principal, now):
                raise _Stale
        loaded.extras["registered"] = True
        markers, inside = None, False
        if request.endpoint == "chat.completions":
            markers = markers_for(loaded.tokenizer)
            # A template may open the trace for the model (the prompt ends with the marker).
            tail = str(loaded.tokenizer.decode(encoded.prompts[0][-16:]))
            inside = tail.rstrip().endswith(markers.open)
        return AdmittedCall(
            new_call_id(),
            entry,
            loaded,
            encoded,
            payloads,
            charged,
            window,
            params,
            pool,
            markers,
            inside,
            scanner,
        )
