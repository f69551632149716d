"""The small Llama that bench/release_formats.py quantizes: trained on standard-library docs.

Trained from scratch on the docstrings of the standard-library modules in ``TRAIN_MODULES`` (the
held-out text of :func:`release.fidelity.held_out_texts` comes from others), with a byte-level
BPE tokenizer trained on the same text. Cached under ~/.cache/tiergate/release-formats-lm by
recipe and corpus digest, so a different recipe never reuses a stale model.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import math
import shutil
import time
from pathlib import Path

import torch

__all__ = ["CACHE", "TRAIN_MODULES", "train_model", "training_texts"]

CACHE = Path.home() / ".cache" / "tiergate" / "release-formats-lm"
# Trained on these modules' docs; the held-out text comes from others (see the docstring).
TRAIN_MODULES = [
    "abc",
    "aifc",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "bz2",
    "calendar",
    "cmd",
    "code",
    "codecs",
    "collections",
    "colorsys",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "email",
    "enum",
    "filecmp",
    "fileinput",
    "fnmatch",
    "ftplib",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "graphlib",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "keyword",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "mimetypes",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pkgutil",
    "platform",
    "poplib",
    "pprint",
    "queue",
    "quopri",
    "random",
    "re",
    "reprlib",
    "sched",
    "secrets",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "threading",
    "timeit",
    "tokenize",
    "trace",
    "traceback",
    "types",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "zipfile",
    "zlib",
]


def training_texts() -> list[str]:
    import warnings

    texts: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in TRAIN_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for _, obj in sorted(vars(module).items()):
                doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
                if doc and len(doc) > 80 and getattr(obj, "__module__", name) == name:
                    texts.append(doc)
            if module.__doc__:
                texts.append(inspect.cleandoc(module.__doc__))
    return texts


def train_model(args: argparse.Namespace) -> Path:
    """A Llama trained on the training texts; cached by recipe and corpus digest."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = training_texts()
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    name = f"llama-l{args.layers}-d{args.width}-v{args.vocab}-n{args.steps}-{digest}"
    folder = CACHE / name
    if (folder / "model.safetensors").is_file():
        return folder
    tmp = CACHE / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(tmp)
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text)["input_ids"] + [eos]
    data = torch.tensor(stream)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.width,
        intermediate_size=args.width * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=args.width // 64,
        num_key_value_heads=args.width // 64,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    seq, batch = 128, 8
    start = time.perf_counter()
    for step in range(args.steps):
        lr = (
            3e-3
            * min(1.0, (step + 1) / 50)
            * (0.1 + 0.9 * (1 + math.cos(math.pi * step / args.steps)) / 2)
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=generator)
        inputs = torch.stack([data[s : s + seq] for s in starts.tolist()])
        loss = model(input_ids=inputs, labels=inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"# step {step} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    model.save_pretrained(tmp)
    tmp.rename(folder)
    return folder
