"""Regenerate tests/watermark/vllm_gumbel_vectors.json with vLLM's own watermark code.

Run in the vLLM environment (vLLM 0.32's ``vllm.v1.watermarking`` runs on CPU tensors even
where its engine path, Model Runner V2, does not start)::

    python -m tests.watermark.gen_vllm_gumbel_vectors

Nothing here re-implements vLLM: PRF outputs come from ``PhiloxPRF.uniform``, watermarked
tokens from ``GumbelWatermarker.sample`` and detections from ``GumbelWatermarkDetector``.
The sampling loop feeds the watermarker what vLLM's ``GPUWatermarkSampler`` does: contexts of
the last ``context_width`` generated tokens padded with -1 (the prompt is never part of a
context), and, with ``single_turn`` deduplication, ordinary sampling for a context that
already occurred in the generated tokens. Logits come from a seeded random bigram table (a
stand-in language model over a 1024-token vocabulary, the size of the tests' tiny tokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent / "vllm_gumbel_vectors.json"
VOCAB = 1024
KEYS = [0, 1, 0x5EED_CAFE_F00D_1234, (1 << 64) - 1]
PRF_WIDTHS = [1, 2, 3, 4, 5, 8, 9]
LENGTH = 200
# (key, context_width, deduplicate (engine single_turn and detector), logit scale, seed)
SAMPLES = [
    (0x5EED_CAFE_F00D_1234, 4, True, 3.0, 1),
    (0x5EED_CAFE_F00D_1234, 4, True, 1.5, 2),
    (987654321, 2, True, 3.0, 3),
    (987654321, 1, True, 4.0, 4),
    (42, 8, False, 3.0, 5),
    ((1 << 64) - 1, 4, True, 3.0, 6),
]
WRONG_KEY = 0x0BAD_0BAD_0BAD_0BAD


def _prf_cases() -> list[dict[str, Any]]:
    import torch
    from vllm.v1.watermarking import PhiloxPRF

    gen = torch.Generator().manual_seed(17)
    cases = []
    for key in KEYS:
        prf = PhiloxPRF(key)
        for width in PRF_WIDTHS:
            contexts = torch.randint(-1, 200_000, (6, width), generator=gen)
            contexts[0] = -1  # the start of a generation
            tokens = torch.randint(0, 200_000, (6,), generator=gen)
            tokens[1] = 0
            tokens[2] = (1 << 31) - 1
            uniforms = prf.uniform(contexts, tokens.unsqueeze(-1)).squeeze(-1)
            bits = uniforms.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
            for row in range(contexts.shape[0]):
                cases.append(
                    {
                        "key": str(key),
                        "context": contexts[row].tolist(),
                        "token": int(tokens[row]),
                        "uniform_float32_bits": int(bits[row]),
                        "uniform": float(uniforms[row]),
                    }
                )
    return cases


def _generate(
    key: int, width: int, dedup: bool, scale: float, seed: int, watermark: bool
) -> list[int]:
    import torch
    from vllm.v1.watermarking import GumbelWatermarker

    gen = torch.Generator().manual_seed(seed)
    bigram = torch.randn(VOCAB, VOCAB, generator=gen) * scale
    marker = GumbelWatermarker(key, width)
    out: list[int] = []
    seen: set[tuple[int, ...]] = set()
    previous = int(torch.randint(0, VOCAB, (1,), generator=gen))
    for _ in range(LENGTH):
        logits = bigram[previous].unsqueeze(0)
        context = tuple(([-1] * width + out)[-width:])
        repeated = dedup and context in seen
        seen.add(context)
        if watermark and not repeated:
            token = int(marker.sample(logits, torch.tensor([context])).token_ids[0])
        else:
            probs = torch.softmax(logits[0], dim=-1)
            token = int(torch.multinomial(probs, 1, generator=gen))
        out.append(token)
        previous = token
    return out


def _detection(ids: list[int], key: int, width: int, dedup: bool) -> dict[str, Any]:
    from vllm.v1.watermarking import GumbelWatermarkDetector

    found = GumbelWatermarkDetector(key, width, deduplicate_contexts=dedup).detect(ids)
    return {
        "score": found.score,
        "p_value": found.p_value,
        "num_scored_tokens": found.num_scored_tokens,
    }


def build() -> dict[str, Any]:
    import vllm

    samples = []
    for key, width, dedup, scale, seed in SAMPLES:
        for watermark in (True, False):
            ids = _generate(key, width, dedup, scale, seed, watermark)
            samples.append(
                {
                    "key": str(key),
                    "context_width": width,
                    "deduplicate_contexts": dedup,
                    "watermarked": watermark,
                    "logit_scale": scale,
                    "seed": seed,
                    "token_ids": ids,
                    "vllm_detection": _detection(ids, key, width, dedup),
                    "vllm_detection_wrong_key": _detection(ids, WRONG_KEY, width, dedup),
                }
            )
    return {
        "scheme": "vllm-gumbel",
        "source": f"vllm {vllm.__version__}: vllm.v1.watermarking (PhiloxPRF, "
        "GumbelWatermarker, GumbelWatermarkDetector)",
        "vocab_size": VOCAB,
        "wrong_key": str(WRONG_KEY),
        "prf": _prf_cases(),
        "samples": samples,
    }


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(build(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {VECTORS}")
