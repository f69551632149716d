"""Sampling a causal LM with and without the watermark, and scoring the samples.

The machinery of bench/watermark_eval_lm.py that other benchmarks reuse (vllm_watermark_quality,
c2pa_resolution_eval): rows split into blocks with one key each (:class:`Marking`), multinomial
sampling through transformers' ``generate``, the perplexity oracle and its per-step cost,
detection and payload decoding per block, the PPL ratio with its band, and the attacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from watermark import (
    GreenListProcessor,
    WatermarkConfig,
    WatermarkKey,
    build_logits_processors,
    decode_payload,
    detect,
)

__all__ = [
    "Marking",
    "Scored",
    "attack",
    "chunks",
    "decodings",
    "detections",
    "oracle",
    "ppl",
    "ppl_ratio",
    "repeated_pairs",
    "sample",
]


@dataclass(frozen=True)
class Marking:
    """How the rows are watermarked: block ``i`` of equal row blocks uses ``groups[i]``."""

    groups: tuple[tuple[WatermarkConfig, WatermarkKey], ...]
    payloads: list[int] | None = None  # one per row, for a payload config


def chunks(
    n: int, marking: Marking | None, size: int
) -> Iterator[tuple[slice, tuple[WatermarkConfig, WatermarkKey] | None]]:
    """Row slices of at most ``size`` rows that never straddle two keys, with their key."""
    groups = marking.groups if marking is not None else (None,)
    edges = np.linspace(0, n, len(groups) + 1).astype(int).tolist()
    for group, low, high in zip(groups, edges[:-1], edges[1:], strict=True):
        for start in range(low, high, size):
            yield slice(start, min(start + size, high)), group


@torch.no_grad()
def sample(
    model: Any,
    prompts: torch.Tensor,
    new: int,
    *,
    seed: int,
    marking: Marking | None = None,
    temperature: float = 1.0,
) -> np.ndarray:
    """``new`` tokens per prompt by multinomial sampling; EOS does not stop a row."""
    torch.manual_seed(seed)
    out = []
    for rows, group in chunks(prompts.shape[0], marking, 100):
        procs = None
        if marking is not None and group is not None:
            payload = None if marking.payloads is None else marking.payloads[rows]
            procs = build_logits_processors(*group, payload=payload, temperature=temperature)
        gen = model.generate(
            prompts[rows],
            attention_mask=torch.ones_like(prompts[rows]),
            do_sample=True,
            temperature=1.0 if procs is not None else temperature,  # procs carry their own
            top_k=0,
            top_p=1.0,
            max_new_tokens=new,
            logits_processor=procs,
            pad_token_id=model.config.eos_token_id,
        )
        out.append(gen[:, prompts.shape[1] :].numpy())
    return np.concatenate(out)


@dataclass(frozen=True)
class Scored:
    """Samples as the base model (the perplexity oracle) sees them."""

    nll: np.ndarray  # per-sample mean NLL (nats) of the sampled tokens, at temperature 1
    entropy: float  # mean entropy (nats) of the distribution sampled from, before any bias
    step_cost: float  # mean increase of the expected NLL that the bias causes at a step


@torch.no_grad()
def oracle(
    model: Any,
    prompts: torch.Tensor,
    gen: np.ndarray,
    *,
    temperature: float = 1.0,
    marking: Marking | None = None,
) -> Scored:
    """Score samples drawn at ``temperature``, with the watermark of ``marking`` if given.

    ``step_cost`` compares, at each step of the samples, the expected oracle NLL of the token
    under the biased distribution with that under the unbiased one: the per-step quality
    cost, which does not depend on where the watermark steered the rest of the sample.
    """
    nll, entropy, cost, count = [], 0.0, 0.0, 0
    for rows, group in chunks(len(gen), marking, 25):
        new = torch.from_numpy(gen[rows])
        full = torch.cat([prompts[rows], new], dim=1)
        logits = model(full).logits[:, prompts.shape[1] - 1 : -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        nll.append(-logp.gather(2, new[..., None])[..., 0].mean(dim=1).numpy())
        tempered = torch.log_softmax(logits / temperature, dim=-1)
        entropy -= float((tempered.exp() * tempered).sum())
        if marking is not None and group is not None:
            # what the processor saw before each sampled token: the last `width` tokens
            width = group[0].context_width
            contexts = full[:, prompts.shape[1] - width : -1].unfold(1, width, 1)
            payload = None
            if marking.payloads is not None:
                payload = [p for p in marking.payloads[rows] for _ in range(new.shape[1])]
            flat = tempered.reshape(new.numel(), -1)
            bias = GreenListProcessor(*group, payload=payload)(
                contexts.reshape(-1, width), torch.zeros_like(flat)
            )
            shift = torch.softmax(flat + bias, dim=-1) - flat.exp()
            cost -= float((shift * logp.reshape(new.numel(), -1)).sum())
        count += new.numel()
    return Scored(np.concatenate(nll), entropy / count, cost / count)


def detections(seqs: Any, marking: Marking) -> tuple[np.ndarray, np.ndarray]:
    """Exact p-values and z-scores of each row under its block's config and key."""
    results = []
    for rows, group in chunks(len(seqs), marking, len(seqs)):
        assert group is not None
        results += [detect(s, *group) for s in seqs[rows]]
    return np.array([r.p_value for r in results]), np.array([r.z_score for r in results])


def ppl(nll: np.ndarray) -> float:
    """Perplexity of equally long samples from their per-sample mean NLL."""
    return math.exp(float(nll.mean()))


def ppl_ratio(nll_wm: np.ndarray, nll_base: np.ndarray) -> str:
    """PPL wm / PPL base with a +-2 standard error band, paired by prompt."""
    diff = nll_wm - nll_base
    mean, half = float(diff.mean()), 2 * float(diff.std(ddof=1)) / math.sqrt(diff.size)
    return f"{math.exp(mean):.3f} ({math.exp(mean - half):.2f}-{math.exp(mean + half):.2f})"


def repeated_pairs(seqs: np.ndarray) -> float:
    """Share of (previous token, token) pairs that repeat an earlier one: detection skips them."""
    fresh = [len(set(zip(row[:-1].tolist(), row[1:].tolist(), strict=True))) for row in seqs]
    return 1.0 - float(np.mean(fresh)) / (seqs.shape[1] - 1)


def attack(
    seqs: np.ndarray, kind: str, fraction: float, vocab: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Replace (by a uniformly random token) or drop each token independently."""
    hit = rng.random(seqs.shape) < fraction
    if kind == "substitution":
        return list(np.where(hit, rng.integers(0, vocab, seqs.shape), seqs))
    return [row[~mask] for row, mask in zip(seqs, hit, strict=True)]


def decodings(seqs: np.ndarray, marking: Marking) -> list[Any]:
    out = []
    for rows, group in chunks(len(seqs), marking, len(seqs)):
        assert group is not None
        out += [decode_payload(s, *group) for s in seqs[rows]]
    return out
