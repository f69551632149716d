"""Tiny, local, reproducible transformers models for tests and demos (no hub downloads).

``build_tiny_model(dir)`` writes a small causal LM (a few MB of safetensors) and a byte-level
BPE tokenizer trained on :data:`TINY_CORPUS`. Random-weight models predict a near-uniform next
token, which makes top-1 agreement between two close models a coin toss; ``train_steps`` trains
the model for a few dozen steps on the corpus (seconds on a CPU) so that its distributions are
peaked like a real model's and fidelity figures mean something.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "TINY_CORPUS",
    "TinyArch",
    "LOWERCASING_VOCAB",
    "build_lowercasing_model",
    "build_lowercasing_tokenizer",
    "build_tiny_model",
    "build_tiny_tokenizer",
]

TinyArch = Literal["llama", "gpt2"]

_SENTENCES = (
    "The release gateway keeps open weights free for everyone to download.",
    "Optimized weights are served only after a signed usage attestation.",
    "Every file of a tier is hashed with sha256 and listed in a manifest.",
    "A model card describes the tiers, the digests and the fidelity of each tier.",
    "The watermark is applied at sampling time and logged with every call.",
    "Detectors compute a z-score over unique context and token pairs.",
    "A small model learns which word tends to follow which other word.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Publishers review access requests, approve them or deny them with a reason.",
    "Links expire after a few minutes and can be revoked at any time.",
    "The transparency log is a Merkle tree with signed checkpoints.",
    "Quantized linear layers store eight bit integers and one scale per row.",
    "Norms and embeddings stay in higher precision to protect accuracy.",
    "Fidelity is measured as top one agreement and mean KL divergence.",
    "Developers pull the open tier with the tools they already use.",
    "A bad safetensors file stops the release with the file and the reason.",
)
# Enough text for a BPE of a few hundred merges and for a few dozen training steps.
TINY_CORPUS = "\n".join(
    " ".join(_SENTENCES[(i * 7 + j) % len(_SENTENCES)] for j in range(4)) for i in range(48)
)
_SPECIAL = "<|endoftext|>"


def build_tiny_tokenizer(
    out_dir: str | os.PathLike[str] | None = None, *, vocab_size: int = 1024
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on :data:`TINY_CORPUS`; save it to ``out_dir`` when given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[_SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TINY_CORPUS.splitlines(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=_SPECIAL,
        eos_token=_SPECIAL,
        unk_token=_SPECIAL,
        pad_token=_SPECIAL,
    )
    if out_dir is not None:
        wrapped.save_pretrained(os.fspath(out_dir))
    return wrapped


def _make_model(
    arch: TinyArch, vocab_size: int, hidden_size: int, num_layers: int
) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PretrainedConfig

    config: PretrainedConfig
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 3,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=4,
            n_positions=128,
            tie_word_embeddings=True,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}")
    model: PreTrainedModel = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    return model


def _train(model: PreTrainedModel, token_ids: list[int], steps: int, seed: int) -> None:
    import torch

    data = torch.tensor(token_ids, dtype=torch.long)
    # One intra-op thread: these ops are tiny, and on a busy machine OpenMP workers spinning
    # for a core cost 5x (measured: 25 steps took 20-100 s with 2 threads, 6-20 s with 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_steps(model, data, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train_steps(model: PreTrainedModel, data: torch.Tensor, steps: int, seed: int) -> None:
    import torch

    seq_len, batch = 64, 8
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=generator)
        inputs = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=inputs, labels=inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.train(False)


def build_tiny_model(
    model_dir: str | os.PathLike[str],
    *,
    arch: TinyArch = "llama",
    seed: int = 0,
    shards: int = 1,
    train_steps: int = 0,
    hidden_size: int = 128,
    num_layers: int = 4,
    vocab_size: int = 1024,
) -> Path:
    """Write a tiny causal LM with its tokenizer to ``model_dir`` and return the path.

    Weights are float32 safetensors (``shards > 1`` splits them with an index file via
    ``max_shard_size``). Defaults give about 4 MB with linear layers dominating, as in real
    models, so the optimized tier's size ratio is representative. ``train_steps`` > 0 trains
    on :data:`TINY_CORPUS` first (about 40 steps make next-token distributions peaked).
    """
    import torch

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(out, vocab_size=vocab_size)
    torch.manual_seed(seed)
    model = _make_model(arch, vocab_size, hidden_size, num_layers)
    if train_steps > 0:
        _train(model, tokenizer(TINY_CORPUS)["input_ids"], train_steps, seed)
    if shards > 1:
        total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        model.save_pretrained(out, max_shard_size=max(1, total // shards + 1))
    else:
        model.save_pretrained(out)
    return out


_CHARACTERS = "".join(chr(c) for c in range(32, 127)) + "\n"
# The id of each character in the lowercasing tokenizer (0 is the special token).
LOWERCASING_VOCAB = {_SPECIAL: 0, **{ch: i + 1 for i, ch in enumerate(_CHARACTERS)}}


def build_lowercasing_tokenizer(
    out_dir: str | os.PathLike[str] | None = None,
) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over a cased vocabulary whose normalizer lowercases: every
    upper-case token decodes to its letter and re-encodes as the lower-case one."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(vocab=dict(LOWERCASING_VOCAB), merges=[], unk_token=_SPECIAL))
    backend.decoder = decoders.Fuse()
    backend.normalizer = normalizers.Lowercase()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        bos_token=_SPECIAL,
        eos_token=_SPECIAL,
        unk_token=_SPECIAL,
        pad_token=_SPECIAL,
    )
    if out_dir is not None:
        tokenizer.save_pretrained(os.fspath(out_dir))
    return tokenizer


def build_lowercasing_model(
    model_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    train_steps: int = 40,
    hidden_size: int = 64,
    num_layers: int = 2,
) -> Path:
    """A tiny character-level model whose tokenizer does not round-trip what it samples.

    The tokenizer is :func:`build_lowercasing_tokenizer` (an "uncased" normalizer put on a
    cased vocabulary), and the model is trained on upper-case text: nearly every letter it
    samples is re-encoded as another id, so ``encode(decode(ids)) != ids`` although every
    token decodes to exactly its character.
    """
    import torch

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_lowercasing_tokenizer(out)
    train_ids = [LOWERCASING_VOCAB[ch] for ch in TINY_CORPUS.upper()]  # the cased ids
    torch.manual_seed(seed)
    model = _make_model("llama", len(LOWERCASING_VOCAB), hidden_size, num_layers)
    # Detection from text needs a few hundred sampled characters in one call, and gateways
    # refuse calls past the model's context (context_length_exceeded): rotary positions
    # have no table, so a longer declared context costs nothing.
    model.config.max_position_embeddings = 1024
    if train_steps > 0:
        _train(model, train_ids, train_steps, seed)
    model.save_pretrained(out)
    return out
