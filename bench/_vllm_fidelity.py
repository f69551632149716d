"""Fidelity of an optimized artifact against its open tier, measured in vLLM (its CPU build).

Run under a vLLM environment's interpreter (see bench/release_formats.py --vllm)::

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python bench/_vllm_fidelity.py OPEN TIER [DTYPE]

``DTYPE`` (``float32`` by default) is vLLM's compute dtype for both folders; vLLM 0.32's CPU
WNA16 kernel (int4) has no float32 path, so int4 is measured in ``bfloat16``.

Both folders are loaded by vLLM as a user would (``LLM(model=folder)``; the tier's
compressed-tensors config picks vLLM's int8 scaled-mm / WNA16 kernels) and scored on the
same held-out windows as :func:`release.fidelity.measure_fidelity`, from vLLM's prompt
log-probabilities: top-1 agreement, perplexity ratio, and KL over each position's top 20
(vLLM returns no full distribution, so this KL is a lower-bound estimate). Prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOP = 20


def _score(folder: str, windows: list[list[int]], dtype: str) -> list[list[dict[int, float]]]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=folder, enforce_eager=True, max_model_len=128, dtype=dtype, seed=0)
    params = SamplingParams(max_tokens=1, prompt_logprobs=TOP, temperature=0.0)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=w) for w in windows], params)
    scored = []
    for window, out in zip(windows, outputs, strict=True):
        rows = []
        # Entry i (i >= 1) is the distribution that predicted token i.
        for i, entry in enumerate(out.prompt_logprobs[1:], start=1):
            row = {int(t): float(lp.logprob) for t, lp in entry.items()}
            row[-1] = float(entry[window[i]].logprob)  # the actual token's log-probability
            rows.append(row)
        scored.append(rows)
    del llm
    gc.collect()
    return scored


def main() -> None:
    import vllm

    from release.fidelity import _probe_batch, held_out_texts

    open_dir, tier_dir = sys.argv[1], sys.argv[2]
    dtype = sys.argv[3] if len(sys.argv) > 3 else "float32"
    config = json.loads((Path(open_dir) / "config.json").read_text())
    batch = _probe_batch(Path(open_dir), held_out_texts(), 64, 8, int(config["vocab_size"]))
    windows = [row.tolist() for row in batch]
    reference = _score(open_dir, windows, dtype)
    candidate = _score(tier_dir, windows, dtype)
    agree = total = 0
    kl = nll_ref = nll_cand = 0.0
    for ref_rows, cand_rows in zip(reference, candidate, strict=True):
        for ref, cand in zip(ref_rows, cand_rows, strict=True):
            top_ref = max((t for t in ref if t >= 0), key=lambda t: ref[t])
            top_cand = max((t for t in cand if t >= 0), key=lambda t: cand[t])
            agree += top_ref == top_cand
            total += 1
            nll_ref -= ref[-1]
            nll_cand -= cand[-1]
            floor = min(cand[t] for t in cand if t >= 0)
            kl += sum(math.exp(lp) * (lp - cand.get(t, floor)) for t, lp in ref.items() if t >= 0)
    doc: dict[str, Any] = {
        "vllm": vllm.__version__,
        "dtype": dtype,
        "positions": total,
        "top1_agreement": agree / total,
        "mean_kl": max(0.0, kl / total),
        "perplexity_open": math.exp(nll_ref / total),
        "perplexity_optimized": math.exp(nll_cand / total),
        "perplexity_ratio": math.exp((nll_cand - nll_ref) / total),
    }
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
