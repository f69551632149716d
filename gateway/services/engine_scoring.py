"""Prompt log-likelihoods from a vLLM engine: ``/v1/completions`` with ``echo``, ``logprobs``
and ``max_tokens=0`` relayed to the engine, its answer turned back into the same
:class:`~gateway.generation.prompt_logprobs.PromptLogprobs` the local engine produces.

The engine is asked for token ids (``return_tokens_as_token_ids``) rather than its decoded
strings, so the client's logprobs object is rendered by the gateway's tokenizer exactly as
for the local engine (one wire form, one digest rule) and two alternatives that decode to
the same text stay apart. Nothing is watermarked: no ``vllm_xargs`` are sent, so the plugin
leaves the request alone (vLLM samples one token it does not return).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any

from gateway.generation.prompt_logprobs import PromptLogprobs
from gateway.generation.upstream import Canary, EngineFailed, VllmPool
from gateway.services.engines import gather_all

__all__ = ["remote_prompt_logprobs", "scoring_body"]

_TOKEN_ID_PREFIX = "token_id:"  # noqa: S105 (vLLM's placeholder, not a secret)


def scoring_body(pool: VllmPool, prompt: list[int], top_k: int) -> dict[str, Any]:
    """The engine request that scores one prompt."""
    return {
        "model": pool.spec.served_model_name,
        "prompt": prompt,
        "max_tokens": 0,
        "echo": True,
        "logprobs": top_k,
        "temperature": 0.0,
        "return_tokens_as_token_ids": True,
    }


def _token_id(model: str, token: Any) -> int:
    if isinstance(token, str) and token.startswith(_TOKEN_ID_PREFIX):
        digits = token[len(_TOKEN_ID_PREFIX) :]
        if digits.isdigit() and len(digits) <= 12:
            return int(digits)
    raise EngineFailed(
        f"the engine serving {model} did not return token ids in its logprobs "
        "(is it vLLM with return_tokens_as_token_ids?)"
    )


def _logprob(model: str, value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise EngineFailed(f"the engine serving {model} returned a malformed logprob")
    return float(value)


def parse_prompt_logprobs(model: str, prompt: list[int], answer: dict[str, Any]) -> PromptLogprobs:
    """The engine's echo of ``prompt`` as :class:`PromptLogprobs`; refused unless it scores
    exactly the prompt's tokens (a scored text other than the prompt would be a wrong score
    with a valid digest)."""
    try:
        found = answer["choices"][0]["logprobs"]
        tokens, values, tops = found["tokens"], found["token_logprobs"], found["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        raise EngineFailed(f"the engine serving {model} answered without prompt logprobs") from None
    if not (isinstance(tokens, list) and isinstance(values, list) and isinstance(tops, list)):
        raise EngineFailed(f"the engine serving {model} answered malformed prompt logprobs")
    ids = [_token_id(model, t) for t in tokens]
    if ids != prompt or len(values) != len(ids) or len(tops) != len(ids):
        raise EngineFailed(f"the engine serving {model} scored other tokens than the prompt")
    token_logprobs: list[float | None] = [None]
    top_logprobs: list[dict[int, float] | None] = [None]
    for i in range(1, len(ids)):
        top = tops[i]
        if not isinstance(top, dict):
            raise EngineFailed(f"the engine serving {model} answered malformed top logprobs")
        alternatives = {_token_id(model, t): _logprob(model, v) for t, v in top.items()}
        chosen = _logprob(model, values[i])
        alternatives[ids[i]] = chosen  # always present, as on the local engine
        token_logprobs.append(chosen)
        top_logprobs.append(alternatives)
    return PromptLogprobs(list(prompt), token_logprobs, top_logprobs)


async def remote_prompt_logprobs(
    pool: VllmPool, canary: Canary, prompts: list[list[int]], top_k: int
) -> list[PromptLogprobs]:
    """Each prompt scored by the pool's engine, one request per prompt, all at once."""
    requests: list[Awaitable[Any]] = [
        pool.complete(scoring_body(pool, p, top_k), canary) for p in prompts
    ]
    answers = await gather_all(requests)
    return [parse_prompt_logprobs(pool.model, p, a) for p, a in zip(prompts, answers, strict=True)]
