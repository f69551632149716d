"""Decode tokens/s in this process: transformers (``generate``) and llama.cpp
(``llama-cpp-python``'s low-level API, so that one context decodes several sequences).

Both time a ``short`` and a ``long`` greedy generation of the same prompts where the engine
cannot time its decode steps alone (transformers), or time the decode steps themselves after
one prefill call (llama.cpp); each figure is the median over ``repetitions`` after a warm-up.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["llamacpp_decode_speed", "transformers_decode_speed"]


def transformers_decode_speed(
    folder: Path,
    *,
    dtype: str,
    prompts: Sequence[Sequence[int]],
    batches: Sequence[int],
    short: int,
    long: int,
    repetitions: int,
) -> dict[int, float]:
    """``{batch: decode tokens/s}`` of ``folder`` loaded as users load it (``load_model``)."""
    import torch

    from release.loader import load_model

    model: Any = load_model(folder, dtype=getattr(torch, dtype))
    out: dict[int, float] = {}
    with torch.inference_mode():
        for batch in batches:
            ids = torch.tensor([list(prompts[i % len(prompts)]) for i in range(batch)])

            def timed(n: int, ids: torch.Tensor = ids) -> float:
                start = time.perf_counter()
                model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    pad_token_id=0,
                )
                return time.perf_counter() - start

            timed(short)  # warm-up
            rates = []
            for _ in range(repetitions):
                t_short, t_long = timed(short), timed(long)
                delta = t_long - t_short
                rates.append(batch * (long - short) / delta if delta > 0 else batch * long / t_long)
            out[batch] = statistics.median(rates)
    return out


def llamacpp_decode_speed(
    gguf: Path,
    *,
    prompts: Sequence[Sequence[int]],
    batches: Sequence[int],
    decode_tokens: int,
    repetitions: int,
    threads: int | None = None,
) -> dict[int, float]:
    """``{batch: decode tokens/s}`` of one GGUF file in llama.cpp (greedy tokens fed back)."""
    import llama_cpp
    import numpy as np

    width = max(len(p) for p in prompts)
    most = max(batches)
    lib: Any = llama_cpp
    model = lib.llama_model_load_from_file(os.fsencode(gguf), lib.llama_model_default_params())
    if not model:
        raise RuntimeError(f"llama.cpp could not load {gguf.name}")
    params = lib.llama_context_default_params()
    params.n_seq_max = most
    params.n_ctx = most * (width + decode_tokens + 16)
    params.n_batch = params.n_ubatch = most * width
    params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
    ctx = lib.llama_init_from_model(model, params)
    if not ctx:
        lib.llama_model_free(model)
        raise RuntimeError(f"llama.cpp could not open a context for {gguf.name}")
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    raw = lib.llama_batch_init(most * width, 0, most)

    def fill(entries: list[tuple[int, int, int, bool]]) -> None:
        raw.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            raw.token[i], raw.pos[i], raw.n_seq_id[i] = token, pos, 1
            raw.seq_id[i][0] = seq
            raw.logits[i] = logits

    def decode() -> None:
        rc = lib.llama_decode(ctx, raw)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def greedy(index: int) -> int:
        row = lib.llama_get_logits_ith(ctx, index)
        return int(np.ctypeslib.as_array(row, shape=(n_vocab,)).argmax())

    def run(batch: int) -> float:
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        chosen = [list(prompts[s % len(prompts)])[:width] for s in range(batch)]
        fill([(t, j, s, j == len(p) - 1) for s, p in enumerate(chosen) for j, t in enumerate(p)])
        decode()
        last, pos = [], [len(p) for p in chosen]
        at = 0
        for p in chosen:
            at += len(p)
            last.append(at - 1)
        start = time.perf_counter()
        for _ in range(decode_tokens):
            fill([(greedy(last[s]), pos[s], s, True) for s in range(batch)])
            decode()
            last = list(range(batch))
            pos = [q + 1 for q in pos]
        return batch * decode_tokens / (time.perf_counter() - start)

    try:
        out: dict[int, float] = {}
        for batch in batches:
            run(batch)  # warm-up
            out[batch] = statistics.median(run(batch) for _ in range(repetitions))
        return out
    finally:
        lib.llama_batch_free(raw)
        lib.llama_free(ctx)
        lib.llama_model_free(model)
