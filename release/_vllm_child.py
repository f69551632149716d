"""Run one model folder in vLLM and print what it measured: the script a vLLM environment's
interpreter runs for :mod:`release.engine_measure` (and the benchmarks).

It imports only the standard library and vLLM, because it runs in vLLM's own environment
where nothing of this project is installed; it is started with ``python -I`` (no script
folder on ``sys.path``, so this package's module names cannot shadow vLLM's imports). The
job is one JSON object on stdin::

    {"folder": DIR, "dtype": "bfloat16", "max_model_len": 128,
     "windows": [[ids...], ...], "top_logprobs": 20,           # fidelity (optional)
     "prompts": [[ids...], ...], "batches": [1, 8],             # speed (optional)
     "short": 4, "long": 36, "repetitions": 2}

and the answer one line ``RESULT {json}`` on stdout: vLLM's version, the device, and for
fidelity each window's rows (top log-probabilities of each position plus the actual token's,
under key ``-1``), for speed the decode tokens/s per batch size (median over repetitions,
prefill taken out by subtracting a ``short`` run from a ``long`` one).
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from typing import Any


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # (the device name is a label, never a reason to fail)
        return "cpu"
    return "cpu"


def _score(llm: Any, windows: list[list[int]], top: int) -> list[list[dict[str, float]]]:
    from vllm import SamplingParams  # type: ignore[import-not-found]
    from vllm.inputs import TokensPrompt  # type: ignore[import-not-found]

    params = SamplingParams(max_tokens=1, prompt_logprobs=top, temperature=0.0)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=w) for w in windows], params)
    scored = []
    for window, out in zip(windows, outputs, strict=True):
        rows = []
        # Entry i (i >= 1) is the distribution that predicted token i.
        for i, entry in enumerate(out.prompt_logprobs[1:], start=1):
            row = {str(int(t)): float(lp.logprob) for t, lp in entry.items()}
            row["-1"] = float(entry[window[i]].logprob)
            rows.append(row)
        scored.append(rows)
    return scored


def _speed(llm: Any, job: dict[str, Any]) -> dict[str, float]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prompts: list[list[int]] = job["prompts"]
    short, long, reps = int(job["short"]), int(job["long"]), int(job["repetitions"])

    def timed(batch: int, n: int) -> float:
        chosen = [TokensPrompt(prompt_token_ids=prompts[i % len(prompts)]) for i in range(batch)]
        params = SamplingParams(
            max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0, detokenize=False
        )
        start = time.perf_counter()
        llm.generate(chosen, params, use_tqdm=False)
        return time.perf_counter() - start

    out: dict[str, float] = {}
    for batch in job["batches"]:
        timed(batch, short)  # warm-up: first-call allocations
        rates = []
        for _ in range(reps):
            t_short, t_long = timed(batch, short), timed(batch, long)
            # Noise can make the difference vanish on a tiny model: fall back to the
            # whole run, prefill included (slower, never faster than the truth).
            delta = t_long - t_short
            rates.append(batch * (long - short) / delta if delta > 0 else batch * long / t_long)
        out[str(batch)] = statistics.median(rates)
    return out


def main() -> None:
    job: dict[str, Any] = json.loads(sys.stdin.read())
    import vllm
    from vllm import LLM

    batches = [int(b) for b in job.get("batches", [])]
    llm = LLM(
        model=job["folder"],
        dtype=job["dtype"],
        enforce_eager=True,
        max_model_len=int(job["max_model_len"]),
        max_num_seqs=max([*batches, len(job.get("windows", [])), 1]),
        seed=0,
    )
    result: dict[str, Any] = {"vllm": vllm.__version__, "device": _device()}
    if job.get("windows"):
        result["scored"] = _score(llm, job["windows"], int(job.get("top_logprobs", 20)))
    if batches:
        result["speed"] = _speed(llm, job)
    del llm
    gc.collect()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
