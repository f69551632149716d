"""Benchmark tiergate's detector for vLLM's Gumbel watermark against vLLM's own, same run.

Run with the vLLM environment's python, this checkout on the path (vLLM provides the baseline;
our detector needs numpy only)::

    PYTHONPATH=. .venv-vllm/bin/python bench/vllm_gumbel_detector.py [--texts 40] [--rounds 5]

The texts are made by vLLM's own ``GumbelWatermarker`` (random logits over 2048 tokens,
context width 4, key fixed), so both detectors see real vLLM-Gumbel text; longer inputs are
concatenations of them. For each length: vLLM's ``GumbelWatermarkDetector.detect`` and our
``detect`` on each text one call at a time, ours batched (``detect_many``, one call for all
texts), and our NumPy fallback one call per text. Our detector uses the numba kernel when numba
is importable (vLLM 0.32's environment has it; the script says which path ran). Prints
tokens per CPU-second (median over rounds) and, per detector, the median of the per-round ratios to
vLLM with their range ``[min-max]`` (rounds interleave the detectors, so a ratio compares
runs under the same load), and checks both detectors agree on every text. Thread pools are
pinned to one thread before numpy and torch are imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

KEY = 0x5EED_CAFE_F00D_1234
WIDTH = 4
VOCAB = 2048


def make_texts(count: int, length: int) -> list[list[int]]:
    import torch
    from vllm.v1.watermarking import GumbelWatermarker

    gen = torch.Generator().manual_seed(0)
    marker = GumbelWatermarker(KEY, WIDTH)
    texts = []
    for _ in range(count):
        out: list[int] = []
        for _ in range(length):
            logits = torch.randn(1, VOCAB, generator=gen) * 3.0
            context = torch.tensor([([-1] * WIDTH + out)[-WIDTH:]])
            out.append(int(marker.sample(logits, context).token_ids[0]))
        texts.append(out)
    return texts


def timed(fn: Callable[[], Any], rounds: int) -> float:
    """Median CPU seconds of this process per call: both detectors run on this one thread, and
    on a shared machine CPU time does not count the time another process held the core
    (wall time did, and swung vLLM's rate 10x with the machine's load)."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=40)
    parser.add_argument("--length", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import vllm
    from vllm.v1.watermarking import GumbelWatermarkDetector

    from watermark import vllm_gumbel
    from watermark.vllm_gumbel import GumbelConfig, GumbelKey, detect, detect_many

    kernel = vllm_gumbel.gumbel_kernel()
    if kernel is None:
        print("numba missing: 'ours' below is the NumPy path")

    def numpy_path(texts: list[list[int]]) -> Any:
        compiled, vllm_gumbel.gumbel_kernel = vllm_gumbel.gumbel_kernel, lambda: None
        try:
            return [detect(t, config, key) for t in texts]
        finally:
            vllm_gumbel.gumbel_kernel = compiled

    base = make_texts(args.texts, args.length)
    theirs = GumbelWatermarkDetector(KEY, WIDTH)
    config, key = GumbelConfig(context_width=WIDTH), GumbelKey(KEY)
    import numpy

    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = "missing"
    print(
        f"vllm {vllm.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"numba {numba_version}, one thread; kernel: {kernel is not None}"
    )
    for per_text in (1, 4, args.texts):
        texts = [
            [tok for text in base[i : i + per_text] for tok in text]
            for i in range(0, len(base), per_text)
        ]
        tokens = sum(len(t) for t in texts)
        for t in texts:  # same statistics, or the timing means nothing
            a, b = theirs.detect(t), detect(t, config, key)
            assert a.num_scored_tokens == b.tokens_scored
            assert math.isclose(a.score, b.score, rel_tol=1e-12)
            assert b.watermarked
        # Interleaved rounds (vLLM, ours, ours batched, NumPy back to back), so that each
        # round's ratios compare runs under the same load: the medians and the spread of the
        # per-round ratios are what is reported.
        sides = {
            "vllm": lambda texts=texts: [theirs.detect(t) for t in texts],
            "ours": lambda texts=texts: [detect(t, config, key) for t in texts],
            "many": lambda texts=texts: detect_many(texts, config, key),
            "numpy": lambda texts=texts: numpy_path(texts),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for fn in sides.values():
            fn()  # warm-up (imports, first allocations)
        for _ in range(args.rounds):
            for name, fn in sides.items():
                # One untimed call first: whichever side runs after vLLM's detector otherwise
                # pays for the caches that detector just evicted (2x on one 10,000-token call).
                fn()
                times[name].append(timed(fn, 3))
        length = len(texts[0])

        def rate(name: str, times: dict[str, list[float]] = times, tokens: int = tokens) -> str:
            median = statistics.median(times[name])
            ratios = sorted(v / o for v, o in zip(times["vllm"], times[name], strict=True))
            spread = f"{statistics.median(ratios):.1f}x [{ratios[0]:.1f}-{ratios[-1]:.1f}]"
            return f"{tokens / median:>11,.0f} tok/s " + ("" if name == "vllm" else spread)

        print(
            f"{len(texts):>3} texts x {length:>6} tokens: vLLM {rate('vllm')}| ours "
            f"{rate('ours')} | ours batched {rate('many')} | NumPy path {rate('numpy')}"
        )


if __name__ == "__main__":
    main()
