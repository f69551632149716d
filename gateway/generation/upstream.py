"""Pools of vLLM OpenAI servers that sample for the gateway: health, canary, balancing, relay.

A pool serves one release tier (an :class:`~gateway.generation.engines.EngineSpec`). Each
replica is checked before it gets traffic and again every ``health_interval_s``: ``/health``
answers, ``/v1/models`` lists the served model name (and its ``max_model_len``), and a canary
(a callable the generation service supplies) proves the replica watermarks with the tier's
key; a replica that fails is ``down`` or ``refused`` (with the reason) until a later check
passes. Calls go to the ready replica with the fewest requests in flight (round robin among
equals); a replica that cannot be reached is marked down and the call tried once on another.

Errors are typed: no ready replica is :class:`EngineUnavailable` (503, naming the model),
an engine error :class:`EngineFailed` (502), a timeout :class:`EngineTimeout` (504), an
engine's context-length refusal :class:`~gateway.generation.prompts.ContextLengthExceeded`.
A stream that breaks off or reports an error mid-way raises :class:`EngineFailed` from the
iterator; closing the iterator closes the upstream response, which makes vLLM abort the
request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx

from gateway.errors import GatewayError, ServiceUnavailable
from gateway.generation.engines import EngineSpec
from gateway.generation.prompts import ContextLengthExceeded
from gateway.generation.sse import BadStream, SseChunks

__all__ = [
    "Canary",
    "CanaryDeferred",
    "EngineFailed",
    "EngineTimeout",
    "EngineUnavailable",
    "Replica",
    "VllmPool",
]

_MAX_ERROR_CHARS = 300
# vLLM's words when prompt + max_tokens exceed its --max-model-len.
_CONTEXT_MARKERS = ("maximum context length", "max_model_len", "context length")


class EngineUnavailable(ServiceUnavailable):
    """No replica of the model's engine pool is up and verified; the gateway itself is fine."""

    code = "engine_unavailable"
    title = "Engine unavailable"


class EngineFailed(GatewayError):
    """The engine answered with an error, broke off a stream, or answered nonsense."""

    code = "engine_error"
    status = 502
    title = "Engine error"


class EngineTimeout(GatewayError):
    """The engine did not answer within the pool's ``timeout_s``."""

    code = "engine_timeout"
    status = 504
    title = "Engine timeout"


@dataclass
class Replica:
    """One vLLM server of a pool, as the last check found it."""

    url: str
    state: str = "unchecked"  # unchecked | ready | down | refused
    reason: str = ""
    outstanding: int = 0
    max_model_len: int | None = None
    checked_at: float = -math.inf
    verified_at: float = -math.inf
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "state": self.state}
        if self.reason:
            out["reason"] = self.reason
        if self.state == "ready":
            out["outstanding"] = self.outstanding
        return out


# The watermark proof: None when the replica passed, else why it is refused.
Canary = Callable[["VllmPool", Replica], Awaitable[str | None]]


class CanaryDeferred(Exception):
    """The canary cannot run yet for a reason on the gateway's side (e.g. the release the
    engine serves is not published yet): the replica is neither proven nor at fault, so it
    stays ``unchecked`` and the next call checks it again instead of waiting for the health
    interval."""


def _error_text(text: str) -> str:
    """The message of an engine's error body (vLLM: ``{"error": {"message": ...}}``), bounded."""
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_ERROR_CHARS]
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) and isinstance(data, dict):
        message = data.get("message") or data.get("detail")
    return str(message or data)[:_MAX_ERROR_CHARS]


class VllmPool:
    """The replicas serving one model tier, and the HTTP client that reaches them."""

    def __init__(
        self,
        spec: EngineSpec,
        *,
        health_interval_s: float = 10.0,
        canary_interval_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.spec = spec
        self.health_interval_s = health_interval_s
        self.canary_interval_s = canary_interval_s
        self.clock = clock
        self.replicas = [Replica(url) for url in spec.urls]
        headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        self.timeout = httpx.Timeout(spec.timeout_s, connect=min(5.0, spec.timeout_s))
        self._transport = transport
        self._headers = headers
        self._client: httpx.AsyncClient | None = None
        self._turn = itertools.count()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def model(self) -> str:
        return self.spec.model

    def client(self) -> httpx.AsyncClient:
        # Made on first use, inside the event loop that serves requests.
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=self.timeout,
                transport=self._transport,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            )
        return self._client

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def status(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ready": sum(r.state == "ready" for r in self.replicas),
            "replicas": [r.status() for r in self.replicas],
        }

    @property
    def max_model_len(self) -> int | None:
        """The smallest context of the ready replicas (None until one reported it)."""
        known = [r.max_model_len for r in self.replicas if r.max_model_len is not None]
        return min(known) if known else None

    # ------------------------------------------------------------------ checks

    def _due(self, replica: Replica, now: float) -> bool:
        return now - replica.checked_at >= self.health_interval_s

    async def check(self, replica: Replica, canary: Canary | None) -> None:
        """Probe one replica now (one check at a time per replica) and record the outcome."""
        async with replica.lock:
            now = self.clock()
            if replica.state != "unchecked" and not self._due(replica, now):
                return  # another caller just checked it
            state, reason = await self._probe(replica, canary, now)
            replica.state, replica.reason = state, reason
            replica.checked_at = self.clock()

    async def _probe(self, replica: Replica, canary: Canary | None, now: float) -> tuple[str, str]:
        client = self.client()
        try:
            health = await client.get(
                f"{replica.url}/health", timeout=min(10.0, self.spec.timeout_s)
            )
            if health.status_code != 200:
                return "down", f"/health answered {health.status_code}"
            models = await client.get(f"{replica.url}/v1/models")
        except httpx.HTTPError as exc:
            return "down", f"unreachable: {type(exc).__name__}"
        if models.status_code != 200:
            return "down", f"/v1/models answered {models.status_code}: {_error_text(models.text)}"
        try:
            listed = {m["id"]: m for m in models.json()["data"]}
        except (ValueError, KeyError, TypeError):
            return "down", "/v1/models answered something other than a model list"
        card = listed.get(self.spec.served_model_name)
        if card is None:
            names = ", ".join(sorted(map(str, listed))[:5])
            return "refused", f"serves {names or 'nothing'}, not {self.spec.served_model_name}"
        length = card.get("max_model_len")
        replica.max_model_len = length if isinstance(length, int) and length > 0 else None
        if canary is None:
            # Nothing to prove the watermark with yet: it may not carry calls.
            return "unchecked", "waiting for the watermark canary"
        if replica.state == "ready" and now - replica.verified_at < self.canary_interval_s:
            return "ready", ""
        try:
            refusal = await canary(self, replica)
        except CanaryDeferred as exc:
            return "unchecked", str(exc)
        if refusal is not None:
            return "refused", refusal
        replica.verified_at = self.clock()
        return "ready", ""

    def _schedule(self, replica: Replica, canary: Canary | None) -> None:
        task = asyncio.ensure_future(self.check(replica, canary))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def acquire(self, canary: Canary | None, *, avoid: Replica | None = None) -> Replica:
        """A ready replica for one request (counted in flight until :meth:`release`)."""
        now = self.clock()
        due = [r for r in self.replicas if r.state == "unchecked" or self._due(r, now)]
        ready = [r for r in self.replicas if r.state == "ready" and r is not avoid]
        if not ready and due:
            # Nothing usable: check now, and wait for the answer.
            await asyncio.gather(*(self.check(r, canary) for r in due))
            ready = [r for r in self.replicas if r.state == "ready" and r is not avoid]
        else:
            for replica in due:
                if not replica.lock.locked():
                    self._schedule(replica, canary)
        if not ready:
            reasons = "; ".join(f"{r.url}: {r.state} ({r.reason})" for r in self.replicas)
            raise EngineUnavailable(f"the engine serving {self.model} is unavailable: {reasons}")
        fewest = min(r.outstanding for r in ready)
        least = [r for r in ready if r.outstanding == fewest]
        chosen = least[next(self._turn) % len(least)]
        chosen.outstanding += 1
        return chosen

    async def ensure_available(self, canary: Canary | None) -> None:
        """Raise :class:`EngineUnavailable` now unless some replica is ready (a stream must
        learn this before its response starts, while a 503 can still be sent)."""
        self.release(await self.acquire(canary))

    @staticmethod
    def release(replica: Replica) -> None:
        replica.outstanding -= 1

    def mark_down(self, replica: Replica, reason: str) -> None:
        replica.state, replica.reason = "down", reason
        replica.checked_at = self.clock()

    # ------------------------------------------------------------------ requests

    def _raise_for(self, status: int, message: str) -> NoReturn:
        if status == 400 and any(m in message.lower() for m in _CONTEXT_MARKERS):
            raise ContextLengthExceeded(f"{self.model}: {message}", extra={"param": "max_tokens"})
        raise EngineFailed(
            f"the engine serving {self.model} answered {status}: {message}",
            extra={"engine_status": status},
        )

    async def post(self, replica: Replica, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed completion on ``replica``; errors mapped to ours."""
        try:
            response = await self.client().post(f"{replica.url}/v1/completions", json=body)
        except httpx.TimeoutException:
            raise EngineTimeout(
                f"the engine serving {self.model} did not answer within {self.spec.timeout_s:g} s"
            ) from None
        if response.status_code != 200:
            self._raise_for(response.status_code, _error_text(response.text))
        try:
            data = response.json()
        except ValueError:
            raise EngineFailed(f"the engine serving {self.model} answered non-JSON") from None
        if not isinstance(data, dict):
            raise EngineFailed(f"the engine serving {self.model} answered a non-object")
        return data

    async def complete(self, body: dict[str, Any], canary: Canary | None) -> dict[str, Any]:
        """A non-streamed completion on the best replica (a second one if it is unreachable)."""
        avoid: Replica | None = None
        for attempt in range(2):
            replica = await self.acquire(canary, avoid=avoid)
            try:
                return await self.post(replica, body)
            except httpx.TransportError as exc:
                self.mark_down(replica, f"unreachable: {type(exc).__name__}")
                if attempt:
                    raise EngineUnavailable(
                        f"the engine serving {self.model} is unreachable"
                    ) from None
                avoid = replica
            finally:
                self.release(replica)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(
        self, body: dict[str, Any], canary: Canary | None
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The chunks of a streamed completion as vLLM sends them (``[DONE]`` excluded), one
        list per read from the engine's connection: a batch holds every chunk that had
        arrived, so a relay that fell behind catches up in one pass instead of one per
        token."""
        avoid: Replica | None = None
        for attempt in range(2):
            replica = await self.acquire(canary, avoid=avoid)
            started = False
            try:
                async with self.client().stream(
                    "POST", f"{replica.url}/v1/completions", json={**body, "stream": True}
                ) as response:
                    if response.status_code != 200:
                        text = (await response.aread()).decode("utf-8", "replace")
                        self._raise_for(response.status_code, _error_text(text))
                    started = True
                    # Server-sent events read as bytes and split here, in this generator:
                    # httpx's text and line decoders (three generator layers per chunk) and
                    # one more layer of our own were the relay's largest per-token cost.
                    events = SseChunks()
                    # Raw bytes unless the engine (or a proxy) compressed them: httpx's
                    # decoding layers cost per chunk and do nothing for identity bytes.
                    encoded = response.headers.get("content-encoding", "identity")
                    reads = (
                        response.aiter_raw()
                        if encoded.strip().lower() == "identity"
                        else response.aiter_bytes()
                    )
                    async for data in reads:
                        try:
                            batch = events.feed(data)
                        except BadStream as exc:
                            raise EngineFailed(f"the engine serving {self.model} {exc}") from None
                        if batch:
                            yield batch
                        if events.done:
                            return
                    raise EngineFailed(f"the engine serving {self.model} ended the stream early")
            except httpx.TimeoutException:
                raise EngineTimeout(
                    f"the engine serving {self.model} stopped answering for "
                    f"{self.spec.timeout_s:g} s"
                ) from None
            except httpx.TransportError as exc:
                self.mark_down(replica, f"connection lost: {type(exc).__name__}")
                if started:
                    raise EngineFailed(
                        f"the engine serving {self.model} went away mid-stream"
                    ) from None
                if attempt:
                    raise EngineUnavailable(
                        f"the engine serving {self.model} is unreachable"
                    ) from None
                avoid = replica
            finally:
                self.release(replica)
