"""Run with the vLLM environment's python: tiergate's Gumbel detector against vLLM's own.

Fresh seeded inputs every width (not the stored vectors): vLLM's ``PhiloxPRF.uniform`` and the
installed wheel's ``prf_uniforms`` must agree bit for bit, and ``GumbelWatermarkDetector`` and
``watermark.vllm_gumbel.detect`` must score the same tokens with the same statistics, on text
watermarked by vLLM's ``GumbelWatermarker`` and on plain text. Prints one JSON line.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from vllm.v1.watermarking import GumbelWatermarkDetector, GumbelWatermarker, PhiloxPRF

from watermark import vllm_gumbel


def _watermarked(key: int, width: int, seed: int, length: int = 120) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    marker = GumbelWatermarker(key, width)
    out: list[int] = []
    for _ in range(length):
        logits = torch.randn(1, 512, generator=gen) * 3.0
        context = ([-1] * width + out)[-width:]
        out.append(int(marker.sample(logits, torch.tensor([context])).token_ids[0]))
    return out


def main() -> None:
    failures: list[str] = []
    checked = 0
    rng = np.random.default_rng(7)
    for width in (1, 2, 3, 4, 6, 8, 12):
        key = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
        contexts = rng.integers(-1, 1 << 31, size=(256, width))
        tokens = rng.integers(0, 1 << 31, size=256)
        theirs = PhiloxPRF(key).uniform(torch.tensor(contexts), torch.tensor(tokens)[:, None])
        ours = vllm_gumbel.prf_uniforms(contexts, tokens, vllm_gumbel.GumbelKey(key))
        if theirs.squeeze(-1).numpy().view(np.uint32).tolist() != ours.view(np.uint32).tolist():
            failures.append(f"prf width {width}")
        for dedup in (True, False):
            plain = rng.integers(0, 40, size=150).tolist()  # small alphabet: contexts repeat
            for ids in (_watermarked(key, width, width), plain):
                ref = GumbelWatermarkDetector(key, width, deduplicate_contexts=dedup).detect(ids)
                got = vllm_gumbel.detect(
                    ids,
                    vllm_gumbel.GumbelConfig(context_width=width, deduplicate_contexts=dedup),
                    vllm_gumbel.GumbelKey(key),
                )
                checked += 1
                same = (
                    got.tokens_scored == ref.num_scored_tokens
                    and math.isclose(got.score, ref.score, rel_tol=1e-12)
                    and (
                        math.isclose(got.p_value, ref.p_value, rel_tol=1e-6)
                        or (ref.p_value == 0.0 and got.log10_p_value < -300)
                    )
                )
                if not same:
                    failures.append(f"detect width {width} dedup {dedup}: {got} vs {ref}")
    print(json.dumps({"checked": checked, "failures": failures, "file": vllm_gumbel.__file__}))


if __name__ == "__main__":
    main()
