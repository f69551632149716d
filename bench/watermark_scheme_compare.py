"""tg-kgw-v1 against vLLM's Gumbel-max watermark on one stand-in language model, same run.

    python bench/watermark_scheme_compare.py [--texts 100] [--length 200]

The model is a seeded random bigram table over 1024 tokens (logits = N(0, 1) * spread, two
spreads: a flatter and a peakier model). Each scheme samples ``--texts`` texts of
``--length`` tokens at temperature 1:

- plain: multinomial sampling;
- ``tg-kgw-v1`` (zero-bit, gamma 0.25, delta 2, context width 1: the gateway's defaults less
  the payload) through :class:`watermark.GreenListProcessor`, then multinomial;
- vLLM Gumbel-max (context width 4, vLLM's default, and 1): ``argmax(logits - ln(-ln r))``
  with ``r`` from :func:`watermark.vllm_gumbel.prf_uniforms` (vLLM's Philox, bit for bit), a
  context repeated within the text sampled plainly (vLLM's ``single_turn`` deduplication).

Printed: the perplexity ratio to plain text under the model itself (quality cost), how often
two samples of the same prompt with different seeds come out identical (diversity), and
detection after replacing a share of the tokens with random ones (robustness: share detected
at p <= 1e-6 and the median log10 p).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

VOCAB = 1024
ALPHA = 1e-6
Logits = npt.NDArray[np.float64]
Sampler = Callable[[Logits, list[list[int]], np.random.Generator], list[int]]


def softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    out: npt.NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
    return out


def multinomial(probs: npt.NDArray[np.float64], rng: np.random.Generator) -> list[int]:
    u = rng.random(probs.shape[0])[:, None]
    return [int(i) for i in (probs.cumsum(axis=-1) < u).sum(axis=-1).clip(0, VOCAB - 1)]


def plain_sampler() -> Sampler:
    def sample(logits: Logits, out: list[list[int]], rng: np.random.Generator) -> list[int]:
        return multinomial(softmax(logits), rng)

    return sample


def kgw_sampler() -> Sampler:
    import torch

    from watermark import GreenListProcessor, WatermarkConfig, WatermarkKey

    key = WatermarkKey(b"scheme comparison key, 32 bytes!")
    processor = GreenListProcessor(WatermarkConfig.create(key, VOCAB, gamma=0.25, delta=2.0), key)

    def sample(logits: Logits, out: list[list[int]], rng: np.random.Generator) -> list[int]:
        ids = torch.tensor([row[-1:] if row else [0] for row in out])
        biased = processor(ids, torch.tensor(logits, dtype=torch.float32)).double().numpy()
        return multinomial(softmax(biased), rng)

    return sample


def gumbel_sampler(width: int) -> Sampler:
    from watermark.vllm_gumbel import GumbelKey, prf_uniforms

    key = GumbelKey(0x5EED_CAFE_F00D_1234)
    candidates = np.arange(VOCAB, dtype=np.int64)

    def sample(logits: Logits, out: list[list[int]], rng: np.random.Generator) -> list[int]:
        contexts = np.array([([-1] * width + row)[-width:] for row in out], dtype=np.int64)
        r = prf_uniforms(
            np.repeat(contexts, VOCAB, axis=0), np.tile(candidates, len(out)), key
        ).reshape(len(out), VOCAB)
        marked = np.argmax(logits - np.log(-np.log(r.astype(np.float64))), axis=-1)
        plain = multinomial(softmax(logits), rng)
        chosen = []
        for i, row in enumerate(out):
            padded = [-1] * width + row
            seen = {tuple(padded[j : j + width]) for j in range(len(row))}
            repeated = tuple(padded[len(row) : len(row) + width]) in seen
            chosen.append(plain[i] if repeated else int(marked[i]))
        return chosen

    return sample


def generate(
    sampler: Sampler, table: npt.NDArray[np.float64], starts: list[int], length: int, seed: int
) -> tuple[list[list[int]], float]:
    """Texts and their mean negative log-likelihood per token under the bigram model."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in starts]
    previous = list(starts)
    nll = 0.0
    for _ in range(length):
        logits = table[previous]
        chosen = sampler(logits, out, rng)
        logp = np.log(softmax(logits))
        nll -= float(logp[np.arange(len(chosen)), chosen].sum())
        for row, token in zip(out, chosen, strict=True):
            row.append(token)
        previous = chosen
    return out, nll / (len(starts) * length)


def detector(name: str) -> Callable[[list[list[int]]], list[float]]:
    """log10 p of each text under the scheme's own detector and key."""
    if name == "tg-kgw-v1":
        from watermark import WatermarkConfig, WatermarkKey, detect

        key = WatermarkKey(b"scheme comparison key, 32 bytes!")
        config = WatermarkConfig.create(key, VOCAB, gamma=0.25, delta=2.0)
        return lambda texts: [detect(t, config, key).log10_p_value for t in texts]
    from watermark.vllm_gumbel import GumbelConfig, GumbelKey, detect_many

    width = int(name.rsplit("w", 1)[1])
    gconfig, gkey = GumbelConfig(context_width=width), GumbelKey(0x5EED_CAFE_F00D_1234)
    return lambda texts: [d.log10_p_value for d in detect_many(texts, gconfig, gkey)]


def attack(texts: list[list[int]], share: float, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for text in texts:
        ids = np.array(text)
        hit = rng.random(ids.shape[0]) < share
        ids[hit] = rng.integers(0, VOCAB, int(hit.sum()))
        out.append(ids.tolist())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    schemes: dict[str, Callable[[], Sampler]] = {
        "tg-kgw-v1": kgw_sampler,
        "vllm-gumbel w4": lambda: gumbel_sampler(4),
        "vllm-gumbel w1": lambda: gumbel_sampler(1),
    }
    shares = (0.0, 0.1, 0.2, 0.3, 0.5)
    for spread in (1.5, 3.0):
        table = np.random.default_rng(1).normal(size=(VOCAB, VOCAB)) * spread
        starts = np.random.default_rng(2).integers(0, VOCAB, args.texts).tolist()
        _, plain_nll = generate(plain_sampler(), table, starts, args.length, seed=3)
        print(f"\nspread {spread}: plain perplexity {math.exp(plain_nll):.2f}")
        header = " ".join(f"{f'{s:.0%} replaced':>17}" for s in shares)
        print(f"{'scheme':<15} {'ppl ratio':>9} {'same twice':>10} {header}")
        for name, make in schemes.items():
            texts, nll = generate(make(), table, starts, args.length, seed=3)
            again, _ = generate(make(), table, starts, args.length, seed=4)
            same = sum(a == b for a, b in zip(texts, again, strict=True)) / len(texts)
            score = detector(name.replace(" ", "-"))
            cells = []
            for share in shares:
                logs = score(attack(texts, share, seed=5) if share else texts)
                found = sum(p <= math.log10(ALPHA) for p in logs) / len(logs)
                cells.append(f"{found:>6.0%} ({float(np.median(logs)):>7.1f})")
            ppl = math.exp(nll - plain_nll)
            print(f"{name:<15} {ppl:>9.3f} {same:>10.0%} " + " ".join(f"{c:>17}" for c in cells))


if __name__ == "__main__":
    main()
