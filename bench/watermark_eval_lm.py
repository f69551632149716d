"""Evaluate the watermark on a small causal LM trained locally on Debian's `fortunes` text.

    apt-get install -y fortunes     # freely licensed English text; no hub downloads
    python bench/watermark_eval_lm.py [--train-seconds 300] [--n 150]

Trains (once; cached in ~/.cache/tiergate/fortunes-lm) a byte-level BPE tokenizer and a 3-layer
GPT-2 on the fortunes corpus, then samples continuations of held-out prompts with and without
the watermark and appends a section to docs/watermark-eval.md.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from watermark.config import PayloadSettings, WatermarkConfig
from watermark.detector import detect
from watermark.keys import WatermarkKey
from watermark.payload import decode_payload
from watermark.processor import build_logits_processors

CORPUS = Path("/usr/share/games/fortunes")
CACHE = Path.home() / ".cache" / "tiergate" / "fortunes-lm"
MARKER = "<!-- trained-lm -->"
KEY = WatermarkKey(b"evaluation key, thirty-two bytes")
SEQ = 64


def load_corpus() -> list[str]:
    texts = []
    for path in sorted(CORPUS.iterdir()):
        if path.suffix or not path.is_file():
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        texts += [t.strip() for t in raw.split("\n%\n") if len(t.strip()) > 40]
    if not texts:
        raise SystemExit("no corpus: apt-get install -y fortunes")
    return texts


def build_tokenizer(texts: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = CACHE / "tokenizer"
    if path.exists():
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=["<|end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>")
    fast.save_pretrained(str(path))
    return fast


def train_model(texts: list[str], tokenizer: Any, seconds: float) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    path = CACHE / "model"
    if path.exists():
        return GPT2LMHeadModel.from_pretrained(str(path)).eval()
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += [*tokenizer.encode(text), eos]
    data = torch.tensor(ids)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=192,
        n_layer=3,
        n_head=3,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        offsets = torch.randint(0, data.numel() - SEQ - 1, (16,))
        batch = torch.stack([data[o : o + SEQ] for o in offsets.tolist()])
        loss = model(batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    print(
        f"trained {step} steps in {time.perf_counter() - start:.0f} s, last loss {loss.item():.3f}"
    )
    model.save_pretrained(str(path))
    return model.eval()


@torch.no_grad()
def sample(model: Any, prompts: torch.Tensor, new: int, procs: Any) -> torch.Tensor:
    out: torch.Tensor = model.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new,
        min_new_tokens=new,
        logits_processor=procs,
        pad_token_id=0,
    )
    return out[:, prompts.shape[1] :]


@torch.no_grad()
def perplexity(model: Any, prompts: torch.Tensor, gen: torch.Tensor) -> float:
    full = torch.cat([prompts, gen], dim=1)
    logits = model(full).logits[:, prompts.shape[1] - 1 : -1]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), gen, reduction="mean")
    return math.exp(float(nll))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=300)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("docs/watermark-eval.md"))
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a shared CPU box: oversubscribed pools are slower
    CACHE.mkdir(parents=True, exist_ok=True)
    texts = load_corpus()
    random.Random(0).shuffle(texts)
    held_out, train = texts[:500], texts[500:]
    tokenizer = build_tokenizer(train)
    model = train_model(train, tokenizer, args.train_seconds)
    vocab = model.config.vocab_size
    prompts = torch.tensor(
        [tokenizer.encode(t)[:16] for t in held_out if len(tokenizer.encode(t)) >= 16][: args.n]
    )
    n = prompts.shape[0]
    lines = [MARKER, "", f"## Small trained LM ({n} held-out prompts, 200 new tokens)", ""]
    lines += [
        f"3-layer GPT-2 (d=192, vocab {vocab}, byte-level BPE) trained for "
        f"{args.train_seconds:.0f} s on CPU on Debian `fortunes`; multinomial sampling at "
        "temperature 1. Command: `python bench/watermark_eval_lm.py`. PPL is the base model's "
        "perplexity of the generated tokens.",
        "",
        "| delta | gamma | PPL | TPR z>4 | TPR p<=1e-3 | FPR z>4 | FPR p<=1e-3 | median z |",
        "|---|---|---|---|---|---|---|---|",
    ]
    plain = sample(model, prompts, 200, None)
    null_config = WatermarkConfig.create(KEY, vocab, tokenizer=tokenizer)
    lines.append(f"| 0 (none) | - | {perplexity(model, prompts, plain):.1f} | - | - | - | - | - |")
    for delta, gamma in ((1.0, 0.25), (2.0, 0.25), (5.0, 0.25)):
        config = WatermarkConfig.create(KEY, vocab, tokenizer=tokenizer, gamma=gamma, delta=delta)
        gen = sample(model, prompts, 200, build_logits_processors(config, KEY))
        wm = [detect(g.tolist(), config, KEY) for g in gen]
        null = [detect(g.tolist(), config, KEY) for g in plain]
        z = np.array([r.z_score for r in wm])
        lines.append(
            f"| {delta:g} | {gamma:g} | {perplexity(model, prompts, gen):.1f} "
            f"| {(z > 4).mean():.3f} | {np.mean([r.p_value <= 1e-3 for r in wm]):.3f} "
            f"| {np.mean([r.z_score > 4 for r in null]):.3f} "
            f"| {np.mean([r.p_value <= 1e-3 for r in null]):.3f} | {np.median(z):.2f} |"
        )
    del null_config
    pconfig = WatermarkConfig.create(
        KEY, vocab, tokenizer=tokenizer, delta=2.0, payload=PayloadSettings(payload_bits=20)
    )
    payloads = [random.Random(i).randrange(1 << 20) for i in range(n)]
    gen = sample(model, prompts, 300, build_logits_processors(pconfig, KEY, payload=payloads))
    lines += [
        "",
        "| payload delta | tokens | exact 20-bit recovery | wrong but CRC-valid |",
        "|---|---|---|---|",
    ]
    for length in (100, 200, 300):
        decoded = [decode_payload(g[:length].tolist(), pconfig, KEY) for g in gen]
        exact = np.mean([d.payload == p for d, p in zip(decoded, payloads, strict=True)])
        wrong = np.mean(
            [d.valid and d.payload != p for d, p in zip(decoded, payloads, strict=True)]
        )
        lines.append(f"| 2 | {length} | {exact:.3f} | {wrong:.3f} |")
    lines.append("")
    text = args.out.read_text() if args.out.exists() else ""
    text = text.split(MARKER)[0].rstrip() + "\n\n" + "\n".join(lines) + "\n"
    args.out.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
