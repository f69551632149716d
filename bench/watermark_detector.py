"""Benchmark detection throughput against transformers' WatermarkDetector, on one CPU core.

    python bench/watermark_detector.py [--tokens 1000000] [--hf-tokens 20000]

Both detectors score uniformly random token ids (vocab 32000, context width 1, gamma 0.25) in
the same run; ours also for context width 4 and the self-seeded variant. Prints tokens/s and
the ratio. Thread pools are pinned to one thread before numpy and torch are imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from watermark.config import WatermarkConfig  # noqa: E402
from watermark.detector import detect  # noqa: E402
from watermark.keys import WatermarkKey  # noqa: E402

VOCAB = 32000


def ours(tokens: int, rounds: int) -> dict[str, float]:
    key = WatermarkKey(b"benchmark key, thirty-two bytes!")
    ids = np.random.default_rng(0).integers(0, VOCAB, tokens)
    rates = {}
    for label, width, self_seeded in (("h=1", 1, False), ("h=4", 4, False), ("h=1 self", 1, True)):
        config = WatermarkConfig.create(key, VOCAB, context_width=width, self_seeded=self_seeded)
        start = time.perf_counter()
        detect(ids[:1000], config, key)
        build = time.perf_counter() - start
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            detect(ids, config, key)
            times.append(time.perf_counter() - start)
        rates[label] = tokens / statistics.median(times)
        print(
            f"ours {label:<9}: {rates[label]:>12,.0f} tokens/s "
            f"({tokens} tokens, first call incl. table build {build * 1e3:.1f} ms)"
        )
    return rates


def transformers_rate(tokens: int) -> float:
    import torch
    from transformers import GPT2Config, WatermarkDetector, WatermarkingConfig

    torch.set_num_threads(1)
    detector = WatermarkDetector(
        model_config=GPT2Config(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0),
        device="cpu",
        watermarking_config=WatermarkingConfig(greenlist_ratio=0.25, bias=2.0, context_width=1),
        ignore_repeated_ngrams=True,
    )
    ids = torch.from_numpy(np.random.default_rng(1).integers(1, VOCAB, (1, tokens)))
    start = time.perf_counter()
    detector(ids, z_threshold=4.0)
    rate = tokens / (time.perf_counter() - start)
    print(f"transformers WatermarkDetector: {rate:>12,.0f} tokens/s ({tokens} tokens)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--hf-tokens", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rates = ours(args.tokens, args.rounds)
    baseline = transformers_rate(args.hf_tokens)
    for label, rate in rates.items():
        print(f"ratio ours {label} / transformers: {rate / baseline:,.0f}x")


if __name__ == "__main__":
    main()
