"""Prompt log-likelihoods on the local engine: one forward pass over a batch of prompts, each
token's log-probability given the tokens before it, and the ``k`` most likely alternatives.

This is what evaluation harnesses score multiple choice with (OpenAI's legacy ``echo`` with
``logprobs`` and ``max_tokens=0``). Nothing is sampled, so no watermark applies. torch is
imported lazily, like the sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from release.evals.logprobs import logprobs_digest

__all__ = ["PromptLogprobs", "logprobs_digest", "score_prompts"]


@dataclass(frozen=True)
class PromptLogprobs:
    """One prompt's scored tokens; the first token has no context, so no logprob."""

    token_ids: list[int]
    token_logprobs: list[float | None]
    # Per position: the top-k alternatives' ids and logprobs, always including the prompt's own
    # token (as vLLM does), or None for the first position.
    top_logprobs: list[dict[int, float] | None]

    def to_wire(self, tokenizer: Any) -> dict[str, Any]:
        """The OpenAI legacy ``logprobs`` object: tokens as text, offsets into the echo."""
        tokens = [str(tokenizer.decode([t])) for t in self.token_ids]
        offsets, at = [], 0
        for token in tokens:
            offsets.append(at)
            at += len(token)
        tops = [
            None if top is None else {str(tokenizer.decode([t])): value for t, value in top.items()}
            for top in self.top_logprobs
        ]
        return {
            "tokens": tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": tops,
            "text_offset": offsets,
        }


def score_prompts(model: Any, prompts: list[list[int]], top_k: int) -> list[PromptLogprobs]:
    """Each prompt's token logprobs, from one batched forward pass (right-padded, so every
    real token keeps its position; the causal mask keeps padding out of what precedes it)."""
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts], dtype=torch.long)
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts], dtype=torch.long)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
    results = []
    for row, prompt in enumerate(prompts):
        token_logprobs: list[float | None] = [None]
        tops: list[dict[int, float] | None] = [None]
        if len(prompt) > 1:
            dist = logprobs[row, : len(prompt) - 1]  # position i predicts token i + 1
            targets = torch.tensor(prompt[1:], dtype=torch.long)
            chosen = dist.gather(1, targets.unsqueeze(1)).squeeze(1).tolist()
            best_values, best_ids = dist.topk(top_k, dim=-1) if top_k > 0 else (None, None)
            for i, value in enumerate(chosen):
                top: dict[int, float] = {}
                if best_ids is not None and best_values is not None:
                    top = dict(zip(best_ids[i].tolist(), best_values[i].tolist(), strict=True))
                top[prompt[i + 1]] = value
                token_logprobs.append(_finite(value))
                tops.append({t: _finite(v) for t, v in top.items()})
        results.append(PromptLogprobs(list(prompt), token_logprobs, tops))
    return results


def _finite(value: float) -> float:
    # JSON has no -inf; a token the model gives probability 0 gets the most negative float.
    return value if math.isfinite(value) else -1e30
