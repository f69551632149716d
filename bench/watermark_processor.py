"""Benchmark the watermark logits processor against transformers' WatermarkLogitsProcessor.

    python bench/watermark_processor.py [--rounds 30] [--generate]

Per shape (batch 1/8/32 x vocab 32000/128256), on the same logits and in the same run, times
(interleaved, median of ``--rounds``): a plain sampling step (softmax + multinomial), our
processor (out of place and in place), and transformers' processor. Prints ratios. With
``--generate`` it also times ``model.generate`` of a small random-init GPT-2 with and without
the watermark.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from transformers import WatermarkLogitsProcessor

from watermark.config import WatermarkConfig
from watermark.keys import WatermarkKey
from watermark.processor import GreenListProcessor, build_logits_processors


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sample_step(logits: torch.Tensor) -> torch.Tensor:
    return torch.multinomial(torch.softmax(logits, dim=-1), 1)


def bench_shapes(rounds: int) -> None:
    key = WatermarkKey(b"benchmark key, thirty-two bytes!")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rounds {rounds}")
    header = (
        f"{'batch':>5} {'vocab':>6} {'step ms':>8} {'ours ms':>8} {'inpl ms':>8} {'hf ms':>8} "
        f"{'ours/step':>9} {'inpl/step':>9} {'hf/step':>8} {'ours/hf':>8} {'inpl/hf':>8}"
    )
    print(header)
    for vocab in (32000, 128256):
        config = WatermarkConfig.create(key, vocab, gamma=0.25, delta=2.0)
        ours = GreenListProcessor(config, key)
        ours_inplace = GreenListProcessor(config, key, inplace=True)
        hf = WatermarkLogitsProcessor(
            vocab_size=vocab, device="cpu", greenlist_ratio=0.25, bias=2.0, context_width=1
        )
        for batch in (1, 8, 32):
            gen = torch.Generator().manual_seed(batch)
            ids = torch.randint(0, vocab, (batch, 16), generator=gen)
            logits = torch.randn(batch, vocab, generator=gen) * 3
            scratch = logits.clone()

            fns: dict[str, Callable[[], object]] = {
                "step": partial(sample_step, logits),
                "ours": partial(ours, ids, logits),
                "inpl": partial(ours_inplace, ids, scratch),
                "hf": partial(hf, ids, logits),
            }
            for fn in fns.values():  # warm up: tables, allocator
                fn()
                fn()
            samples: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    samples[name].append(_time(fn))
            m = {name: statistics.median(v) * 1e3 for name, v in samples.items()}
            print(
                f"{batch:>5} {vocab:>6} {m['step']:>8.3f} {m['ours']:>8.3f} {m['inpl']:>8.3f} "
                f"{m['hf']:>8.3f} {m['ours'] / m['step']:>9.3f} {m['inpl'] / m['step']:>9.3f} "
                f"{m['hf'] / m['step']:>8.3f} {m['ours'] / m['hf']:>8.3f} "
                f"{m['inpl'] / m['hf']:>8.3f}"
            )


def bench_generate(rounds: int) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList

    torch.manual_seed(0)
    vocab = 32000
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=vocab, n_positions=512, n_embd=256, n_layer=4, n_head=4)
    ).eval()
    key = WatermarkKey(b"benchmark key, thirty-two bytes!")
    config = WatermarkConfig.create(key, vocab)
    for batch in (1, 8):
        prompt = torch.randint(0, vocab, (batch, 16))
        kwargs = {
            "attention_mask": torch.ones_like(prompt),
            "do_sample": True,
            "temperature": 1.0,
            "top_k": 0,
            "top_p": 1.0,
            "max_new_tokens": 64,
            "min_new_tokens": 64,
            "pad_token_id": 0,
        }
        hf = WatermarkLogitsProcessor(
            vocab_size=vocab, device="cpu", greenlist_ratio=0.25, bias=2.0
        )
        variants = {
            "plain": LogitsProcessorList(),
            "ours": build_logits_processors(config, key),
            "ours+top_k": build_logits_processors(config, key, top_k=50),
            "plain+top_k": build_logits_processors(config, key, top_k=50)[:-1],
            "hf": LogitsProcessorList([hf]),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        with torch.no_grad():
            for _ in range(rounds):
                for name, procs in variants.items():
                    run = partial(model.generate, prompt, logits_processor=procs, **kwargs)
                    samples[name].append(_time(run))
        m = {name: statistics.median(v) for name, v in samples.items()}
        top_k_cost = (m["ours+top_k"] / m["plain+top_k"] - 1) * 100
        print(
            f"generate batch {batch}, 64 new tokens, 4-layer GPT-2 d=256 vocab {vocab}: "
            f"plain {m['plain'] * 1e3:.1f} ms, ours {m['ours'] * 1e3:.1f} ms "
            f"(+{(m['ours'] / m['plain'] - 1) * 100:.1f}%), "
            f"plain+top_k {m['plain+top_k'] * 1e3:.1f} ms, ours+top_k "
            f"{m['ours+top_k'] * 1e3:.1f} ms (+{top_k_cost:.1f}%),"
            f" transformers {m['hf'] * 1e3:.1f} ms (+{(m['hf'] / m['plain'] - 1) * 100:.1f}%)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--generate", action="store_true")
    args = parser.parse_args()
    bench_shapes(args.rounds)
    if args.generate:
        bench_generate(max(3, args.rounds // 6))


if __name__ == "__main__":
    main()
