"""The small causal LM the watermark evaluation runs on, trained locally on Debian's `fortunes`.

Used by bench/watermark_eval_lm.py (see its docstring for the command): a byte-level BPE
tokenizer and a GPT-2 trained for a fixed number of optimizer steps, cached outside the
repository in ~/.cache/tiergate/fortunes-lm/<name>, where the name carries the model shape, the
step count and a digest of the training text. ``--train-seconds`` only caps one run; a capped
run saves its state and the next one resumes it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CORPUS = Path("/usr/share/games/fortunes")
CACHE = Path.home() / ".cache" / "tiergate" / "fortunes-lm"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; it names the cache entry."""

    vocab: int = 4096
    layers: int = 3
    width: int = 192
    heads: int = 3
    seq: int = 320  # >= prompt + 300 sampled tokens: no position is used untrained
    batch: int = 8
    lr: float = 2e-3
    warmup: int = 100
    steps: int = 2400
    bf16: bool = True  # autocast matmuls to bfloat16 (AMX/AVX-512 where present); fp32 weights

    def name(self, corpus_digest: str) -> str:
        return (
            f"gpt2-l{self.layers}-d{self.width}-v{self.vocab}-s{self.seq}-b{self.batch}"
            f"-lr{self.lr:g}-n{self.steps}{'-bf16' if self.bf16 else ''}-{corpus_digest}"
        )


def load_corpus() -> list[str]:
    texts = []
    for path in sorted(CORPUS.iterdir()):
        if path.suffix or not path.is_file():  # skip the .dat indexes and .u8 links
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        texts += [t.strip() for t in raw.split("\n%\n") if len(t.strip()) > 40]
    if not texts:
        raise SystemExit("no corpus: apt-get install -y fortunes")
    return texts


def build_tokenizer(texts: list[str], vocab: int, path: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if path.exists():
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>")
    fast.save_pretrained(str(path))
    return fast


def token_stream(texts: list[str], tokenizer: Any) -> torch.Tensor:
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += [*tokenizer.encode(text), eos]
    return torch.tensor(ids)


@torch.no_grad()
def held_out_perplexity(model: Any, stream: torch.Tensor, seq: int) -> float:
    """Perplexity of the model on unseen real text, in non-overlapping windows of ``seq``."""
    was_training = model.training
    model.eval()
    usable = stream[: stream.numel() // seq * seq].view(-1, seq)
    nll, count = 0.0, 0
    for rows in usable.split(16):
        loss = model(rows, labels=rows).loss  # mean over rows x (seq - 1) predictions
        nll += float(loss) * rows.shape[0] * (seq - 1)
        count += rows.shape[0] * (seq - 1)
    model.train(was_training)
    return math.exp(nll / count)


def new_model(recipe: Recipe, eos: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=recipe.vocab,
        n_positions=recipe.seq,
        n_embd=recipe.width,
        n_layer=recipe.layers,
        n_head=recipe.heads,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    return GPT2LMHeadModel(config)


def train_model(
    recipe: Recipe,
    train: torch.Tensor,
    held_out: torch.Tensor,
    path: Path,
    seconds: float,
    eos: int,
) -> tuple[Any, dict[str, Any]]:
    """Train for ``recipe.steps`` steps (or until ``seconds`` of this run); cached and resumable."""
    from transformers import GPT2LMHeadModel

    final, meta_path, state_path = path / "model", path / "meta.json", path / "train-state.pt"
    if meta_path.exists() and (final / "config.json").exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("complete"):
            print(f"cached model {path} ({meta['steps']} steps)")
            return GPT2LMHeadModel.from_pretrained(str(final)).eval(), meta | {"cached": True}
    model = new_model(recipe, eos)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.1)

    def schedule(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        done = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, done)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    step, spent, losses = 0, 0.0, []
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, spent, losses = state["step"], state["seconds"], state["losses"]
        print(f"resuming {path.name} at step {step}")
    model.train()
    window = torch.arange(recipe.seq)
    start = time.perf_counter()
    while step < recipe.steps and time.perf_counter() - start < seconds:
        # Batches depend on the step number only, so a resumed run sees the same data.
        gen = torch.Generator().manual_seed(step)
        offsets = torch.randint(0, train.numel() - recipe.seq, (recipe.batch, 1), generator=gen)
        batch = train[offsets + window]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
            loss = model(batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses = [*losses[-99:], loss.item()]
        if step % 100 == 0:
            print(
                f"step {step}/{recipe.steps} loss {np.mean(losses):.3f} "
                f"({spent + time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        if step % 500 == 0:
            print(f"  held-out perplexity {held_out_perplexity(model, held_out, recipe.seq):.1f}")
    spent += time.perf_counter() - start
    meta = {
        "recipe": asdict(recipe),
        "steps": step,
        "complete": step >= recipe.steps,
        "train_loss_last100": float(np.mean(losses)),
        "held_out_perplexity": held_out_perplexity(model, held_out, recipe.seq),
        "train_seconds": spent,
        "train_tokens": int(train.numel()),
    }
    path.mkdir(parents=True, exist_ok=True)
    if meta["complete"]:
        model.save_pretrained(str(final))
        state_path.unlink(missing_ok=True)
    else:
        print(f"time cap hit at step {step}; state saved, the next run resumes it")
        state = {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "step": step,
            "seconds": spent,
            "losses": losses,
        }
        torch.save(state, state_path)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return model.eval(), meta
