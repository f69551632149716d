"""Multiple choice scored from prompt log-likelihoods, recomputable from what the gateway
returned and logged: each choice's logprobs object, its digest, and the choice picked.

A scoring call (``/v1/completions`` with ``echo``, ``logprobs`` and ``max_tokens=0``) answers
every prompt token's logprob; the gateway logs the sha256 of each prompt's logprobs object
(:func:`logprobs_digest`), so a verifier holding the objects checks them against the log and
recomputes the choice. The choice's log-likelihood is the sum over the tokens after the part
all choices share (the context): the shared tokens have the same logprobs in every choice, so
the split needs no tokenizer and the picked choice is the one lm-evaluation-harness picks for
``acc`` (not ``acc_norm``, which divides by lengths this does not know).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from licensing.canonical import canonical_json
from release.errors import EvalEvidenceError

__all__ = ["choice_loglikelihoods", "logprobs_digest", "picked_choice", "samples_digest"]


def logprobs_digest(wire: Mapping[str, Any]) -> str:
    """sha256 (hex) of one prompt's logprobs object as the client receives it (``tokens``,
    ``token_logprobs``, ``top_logprobs``) in canonical JSON, each logprob as Python's
    shortest round-trip ``repr``, so the string is exact on any platform."""
    tops = wire.get("top_logprobs") or []
    document = {
        "tokens": [str(t) for t in wire["tokens"]],
        "token_logprobs": [None if v is None else repr(float(v)) for v in wire["token_logprobs"]],
        "top_logprobs": [
            None if top is None else {str(t): repr(float(v)) for t, v in top.items()}
            for top in tops
        ],
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


def samples_digest(digests: Sequence[str]) -> str:
    """One sample's digest from its choices' logprobs digests (what the attestation names)."""
    return "sha256:" + hashlib.sha256(canonical_json(list(digests))).hexdigest()


def choice_loglikelihoods(wires: Sequence[Mapping[str, Any]]) -> list[tuple[float, bool]]:
    """Each choice's (log-likelihood of its own tokens, greedy?) after the shared context."""
    if len(wires) < 2:
        raise EvalEvidenceError(
            "a multiple-choice sample scores at least two choices", reason="logprobs"
        )
    tokens = [list(w["tokens"]) for w in wires]
    shared = 0
    while all(len(t) > shared + 1 for t in tokens) and len({t[shared] for t in tokens}) == 1:
        shared += 1
    out = []
    for wire in wires:
        values = list(wire["token_logprobs"])[shared:]
        tops = list(wire.get("top_logprobs") or [])[shared:]
        if any(v is None for v in values):
            raise EvalEvidenceError("a choice's own tokens have no logprob", reason="logprobs")
        greedy = all(
            top is not None and float(v) >= max(float(x) for x in top.values())
            for v, top in zip(values, tops, strict=False)
        )
        out.append((sum(float(v) for v in values), greedy))
    return out


def picked_choice(wires: Sequence[Mapping[str, Any]]) -> int:
    """The index of the most likely choice (the first of equals, as ``argmax`` picks)."""
    scores = [ll for ll, _ in choice_loglikelihoods(wires)]
    return scores.index(max(scores))
