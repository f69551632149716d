"""Generation on remote vLLM engines: which tier goes where, what is sent, what comes back.

The generation service keeps every rule of a call (admission, quota, call tags, the log);
this module turns an admitted call into engine requests and their answers into choices.
Each choice is one engine request (``n`` choices of ``p`` prompts: ``n * p`` requests), so
each carries its own call tag in ``vllm_xargs``; the request body is built here from the
admitted call alone, so no field a client sent (``vllm_xargs``, ``logits_processors``...)
ever reaches an engine. The canary proves, before a replica gets traffic and every
``canary_interval_s``, that it applies the tier's watermark key: a fixed prompt sampled
with a known call tag must come back carrying that tag (the project's detector on the
returned token ids).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import httpx

from gateway.generation.engines import EngineSpec
from gateway.generation.models import LoadedModel, ModelRef
from gateway.generation.sampler import Choice, SamplingParams
from gateway.generation.upstream import EngineFailed, Replica, VllmPool
from gateway.generation.upstream import EngineTimeout as EngineTimeout
from gateway.generation.upstream import EngineUnavailable as EngineUnavailable

__all__ = [
    "CANARY_PAYLOAD",
    "EngineRouter",
    "engine_bodies",
    "gather_all",
    "remote_choices",
    "remote_stream",
    "run_canary",
]

CANARY_PROMPT = "The tiergate canary checks that this engine watermarks its text."
CANARY_PAYLOAD = 0x2A5C3  # reduced to the configured payload bits
CANARY_TOKENS = 160
# A replica whose canary does not carry the tag at this level is refused. The canary is
# seeded, so a sound engine passes or fails it the same way every time: the level is set
# where the tiny test models pass with a wide margin (p ~ 1e-20 at 160 tokens, delta 2)
# and an engine without the key passes with probability 1e-6.
CANARY_MAX_P = 1e-6
_SEED_MASK = (1 << 63) - 1


class EngineRouter:
    """The vLLM pools of this gateway, by the exact release tier each serves."""

    def __init__(
        self,
        specs: Sequence[EngineSpec],
        *,
        health_interval_s: float = 10.0,
        canary_interval_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.pools = {
            (s.repo_id, s.version, s.tier): VllmPool(
                s,
                health_interval_s=health_interval_s,
                canary_interval_s=canary_interval_s,
                transport=transport,
            )
            for s in specs
        }

    def pool_for(self, ref: ModelRef) -> VllmPool | None:
        return self.pools.get((ref.repo_id, ref.version, ref.tier))

    def status(self) -> list[dict[str, Any]]:
        return [pool.status() for pool in self.pools.values()]

    async def aclose(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()


def engine_bodies(
    pool: VllmPool,
    *,
    prompts: list[list[int]],
    params: SamplingParams,
    key_id: str,
    payloads: list[int],
) -> list[dict[str, Any]]:
    """One ``/v1/completions`` body per choice (choice ``k`` samples prompt ``k // n``)."""
    n = len(payloads) // len(prompts)
    bodies = []
    for k, payload in enumerate(payloads):
        body: dict[str, Any] = {
            "model": pool.spec.served_model_name,
            "prompt": prompts[k // n],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
            "return_token_ids": True,
            "skip_special_tokens": True,
            "vllm_xargs": {"tiergate_key_id": key_id, "tiergate_payload": payload},
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            # Choices of one seeded call differ as the local engine's rows do.
            body["seed"] = (params.seed + k) & _SEED_MASK
        if params.logprobs is not None:
            body["logprobs"] = params.logprobs
        bodies.append(body)
    return bodies


def _eos_ids(tokenizer: Any) -> set[int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, list | tuple) else {int(eos)}


def _token_ids(model: str, value: Any) -> list[int]:
    # type() is: a JSON parser makes exact ints, and a bool is refused.
    if not isinstance(value, list) or not all(type(t) is int for t in value):
        raise EngineFailed(
            f"the engine serving {model} returned no token ids (is it vLLM >= 0.10 with "
            "return_token_ids?)"
        )
    return value


def _finish(model: str, value: Any) -> str:
    if value in ("stop", "length"):
        return str(value)
    raise EngineFailed(f"the engine serving {model} ended a choice with {value!r:.40}")


def _strip_eos(ids: list[int], eos: set[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] in eos else ids


def choice_from(model: str, data: dict[str, Any], tokenizer: Any, params: SamplingParams) -> Choice:
    """The choice of a non-streamed engine answer."""
    try:
        answer = data["choices"][0]
        text = answer["text"]
    except (KeyError, IndexError, TypeError):
        raise EngineFailed(f"the engine serving {model} answered without a choice") from None
    if not isinstance(text, str):
        raise EngineFailed(f"the engine serving {model} answered a non-text choice")
    ids = _strip_eos(_token_ids(model, answer.get("token_ids")), _eos_ids(tokenizer))
    logprobs = tops = None
    if params.logprobs is not None and isinstance(answer.get("logprobs"), dict):
        found = answer["logprobs"]
        logprobs = [float(v) if v is not None else 0.0 for v in found.get("token_logprobs", [])]
        tops = [dict(t or {}) for t in found.get("top_logprobs") or []] or None
        logprobs = logprobs[: len(ids)]
        tops = tops[: len(ids)] if tops else None
    return Choice(ids, text, _finish(model, answer.get("finish_reason")), logprobs,
                  tops if params.logprobs else None)  # fmt: skip


async def gather_all(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """All results, or the first error with every other request cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def remote_choices(
    pool: VllmPool,
    canary: Callable[[VllmPool, Replica], Awaitable[str | None]],
    bodies: list[dict[str, Any]],
    tokenizer: Any,
    params: SamplingParams,
) -> list[Choice]:
    answers = await gather_all([pool.complete(body, canary) for body in bodies])
    return [choice_from(pool.model, answer, tokenizer, params) for answer in answers]


class _Done:
    """A choice's stream ended: its finish reason."""

    def __init__(self, index: int, finish: str) -> None:
        self.index, self.finish = index, finish


def _read_batch(
    model: str, batch: list[dict[str, Any]], finish: str | None
) -> tuple[str, list[int], str | None]:
    """The text and token ids of what arrived in one read, and the finish reason so far."""
    parts: list[str] = []
    new: list[int] = []
    for chunk in batch:
        for part in chunk.get("choices") or []:
            text = part.get("text")
            if text:
                parts.append(text)
            ids = part.get("token_ids")
            if ids:
                new.extend(_token_ids(model, ids))
            if part.get("finish_reason") is not None:
                finish = _finish(model, part["finish_reason"])
    return "".join(parts), new, finish


async def remote_stream(
    pool: VllmPool,
    canary: Callable[[VllmPool, Replica], Awaitable[str | None]],
    bodies: list[dict[str, Any]],
    tokenizer: Any,
) -> AsyncGenerator[tuple[int, str] | list[Choice], None]:
    """(choice index, text) as the engine streams them, then every choice, finished.

    Chunks are relayed as they arrive (no buffering, no waiting): what arrived while the
    relay was busy goes out merged, one piece per choice, so under load the gateway's cost
    per token falls instead of its backlog growing. An error of any choice's stream is
    raised here (after the text that preceded it), and closing this iterator cancels every
    engine stream of the call.
    """
    queue: asyncio.Queue[tuple[int, str, list[int]] | _Done | BaseException] = asyncio.Queue()
    model = pool.model

    async def pump(index: int, body: dict[str, Any]) -> None:
        finish = None
        try:
            async for batch in pool.stream(body, canary):
                text, new, finish = _read_batch(model, batch, finish)
                if text or new:
                    queue.put_nowait((index, text, new))
            if finish is None:
                raise EngineFailed(f"the engine serving {model} ended a stream without a reason")
            queue.put_nowait(_Done(index, finish))
        except Exception as exc:  # handed to the reader, which raises it
            queue.put_nowait(exc)

    tasks = [asyncio.ensure_future(pump(i, body)) for i, body in enumerate(bodies)]
    texts: list[list[str]] = [[] for _ in bodies]
    ids: list[list[int]] = [[] for _ in bodies]
    finishes: list[str] = [""] * len(bodies)
    try:
        remaining = len(bodies)
        while remaining:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            fresh: dict[int, list[str]] = {}
            failure: BaseException | None = None
            for item in items:
                if isinstance(item, BaseException):
                    failure = item
                    break
                if isinstance(item, _Done):
                    finishes[item.index] = item.finish
                    remaining -= 1
                    continue
                index, text, new = item
                ids[index].extend(new)
                if text:
                    fresh.setdefault(index, []).append(text)
            for index, parts in fresh.items():
                text = "".join(parts)
                texts[index].append(text)
                yield (index, text)
            if failure is not None:
                raise failure
    finally:
        for task in tasks:
            task.cancel()  # a dropped client: the engine streams close, vLLM aborts them
    eos = _eos_ids(tokenizer)
    yield [
        Choice(_strip_eos(i, eos), "".join(t), f)
        for i, t, f in zip(ids, texts, finishes, strict=True)
    ]


async def run_canary(pool: VllmPool, replica: Replica, model: LoadedModel) -> str | None:
    """None when ``replica`` watermarks the canary with ``model``'s key and a known call tag,
    else why the replica is refused."""
    from watermark.payload import detect_payload

    config = model.extras["config"]
    key = model.extras["key"]
    bits = config.payload.payload_bits if config.payload is not None else 0
    payload = CANARY_PAYLOAD & ((1 << bits) - 1)
    prompt = [int(i) for i in model.tokenizer(CANARY_PROMPT)["input_ids"]]
    room = min(x for x in (model.context_length, replica.max_model_len, 1 << 30) if x)
    body = {
        "model": pool.spec.served_model_name,
        "prompt": prompt,
        "max_tokens": max(1, min(CANARY_TOKENS, room - len(prompt))),
        "temperature": 1.0,
        "seed": 20240917,
        "ignore_eos": True,
        "return_token_ids": True,
        "vllm_xargs": {"tiergate_key_id": config.key_id, "tiergate_payload": payload},
    }
    try:
        answer = await pool.post(replica, body)
        ids = _token_ids(pool.model, answer["choices"][0].get("token_ids"))
    except (EngineFailed, KeyError, IndexError, TypeError) as exc:
        message = getattr(exc, "message", type(exc).__name__)
        if "no watermark key" in message:
            return f"the engine does not hold watermark key {config.key_id}: {message}"
        return f"canary failed: {message}"
    except httpx.HTTPError as exc:
        return f"canary failed: {type(exc).__name__}"
    except Exception as exc:  # ContextLengthExceeded, timeouts: the replica is not usable
        return f"canary failed: {getattr(exc, 'message', type(exc).__name__)}"
    result = await asyncio.to_thread(
        detect_payload, prompt + ids, config, key, payload, prompt_length=len(prompt)
    )
    if result.p_value > CANARY_MAX_P:
        return (
            f"canary came back without the watermark of key {config.key_id} "
            f"(p = {result.p_value:.2g} over {result.tokens_scored} tokens): the engine runs "
            "without the tiergate plugin or with another key"
        )
    return None
