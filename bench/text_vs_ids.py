"""Detection from text against detection from token ids, on a tokenizer that does not
round-trip (issue 18): the p-values each way, and what trying every candidate tokenization
costs against the plain encoding alone, measured in the same run.

    python bench/text_vs_ids.py [--tokens 400] [--seeds 5] [--repeat 20]

Seeded: the p-values are fixed outcomes; the timings are medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from release.testing import LOWERCASING_VOCAB, build_lowercasing_tokenizer, build_tiny_tokenizer
from watermark.config import WatermarkConfig
from watermark.detector import detect, detect_text
from watermark.keys import WatermarkKey
from watermark.text_detection import detect_text_robust

UPPER = [LOWERCASING_VOCAB[c] for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ "]


def sample(
    config: WatermarkConfig, key: WatermarkKey, vocab: list[int], n: int, seed: int
) -> list[int]:
    import torch

    from watermark.processor import GreenListProcessor

    generator = torch.Generator().manual_seed(seed)
    processor = GreenListProcessor(config, key)
    bias = torch.full((config.vocab_size,), -6.0)
    bias[vocab] = 0.0
    ids = torch.tensor([[vocab[0]]])
    for _ in range(n):
        scores = processor(ids, torch.randn(1, config.vocab_size, generator=generator) * 2 + bias)
        ids = torch.cat(
            [ids, torch.multinomial(torch.softmax(scores, -1), 1, generator=generator)], 1
        )
    return [int(i) for i in ids[0, 1:].tolist()]


def median_seconds(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    key = WatermarkKey(bytes(range(32)))
    lower = build_lowercasing_tokenizer()
    config = WatermarkConfig.create(key, len(lower), tokenizer=lower, gamma=0.25, delta=2.0)
    print(f"lowercasing tokenizer, {args.tokens} tokens, gamma 0.25, delta 2")
    print("seed  log10 p ids  log10 p text(plain)  log10 p text(candidates, corrected)  via")
    for seed in range(args.seeds):
        ids = sample(config, key, UPPER, args.tokens, seed)
        text = lower.decode(ids)
        by_ids = detect(ids, config, key).log10_p_value
        plain = detect_text(text, lower, config, key).log10_p_value
        robust = detect_text_robust(text, lower, config, key)
        print(
            f"{seed:>4}  {by_ids:>11.2f}  {plain:>19.2f}  {robust.result.log10_p_value:>35.2f}"
            f"  {robust.tokenization}"
        )
    bpe = build_tiny_tokenizer(vocab_size=1024)
    bpe_config = WatermarkConfig.create(key, len(bpe), tokenizer=bpe, gamma=0.25, delta=2.0)
    words = "The release gateway keeps open weights free for everyone to download. " * 20
    detect_text_robust(words, bpe, bpe_config, key)  # builds the piece table once
    base = median_seconds(lambda: detect_text(words, bpe, bpe_config, key), args.repeat)
    robust_s = median_seconds(lambda: detect_text_robust(words, bpe, bpe_config, key), args.repeat)
    k = len(detect_text_robust(words, bpe, bpe_config, key).candidates)
    print(
        f"byte-level BPE, {len(words)} chars: plain {base * 1e3:.1f} ms, all {k} candidates "
        f"{robust_s * 1e3:.1f} ms, ratio {robust_s / base:.2f}x"
    )


if __name__ == "__main__":
    main()
