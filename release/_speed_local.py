"""Decode tokens/s in this process, for :mod:`release.engine_measure`: transformers
(``generate``) and llama.cpp (``llama-cpp-python``'s low-level API, so that one context
decodes several sequences), each artifact against the open tier in the same engine.

Both time a ``short`` and a ``long`` greedy generation of the same prompts where the engine
cannot time its decode steps alone (transformers), or time the decode steps themselves after
one prefill call (llama.cpp); each figure is the median over ``repetitions`` after a warm-up.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from release.engine_measure import (
    _SHORT,
    PROMPT_TOKENS,
    EngineSettings,
    Step,
    _ceiling,
    _speed_record,
    _version,
    _windows,
)
from release.engine_records import SpeedRecord
from release.formats import Optimization

__all__ = [
    "llamacpp_decode_speed",
    "measure_llamacpp",
    "measure_transformers",
    "transformers_decode_speed",
]


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


def measure_transformers(
    open_dir: Path,
    artifacts: Mapping[str, tuple[Optimization, Path]],
    settings: EngineSettings,
    now: datetime,
    step: Step,
) -> dict[str, SpeedRecord]:
    windows, _ = _windows(open_dir)
    prompts = [w[:PROMPT_TOKENS] for w in windows]
    kw: dict[str, Any] = {
        "dtype": "bfloat16",
        "prompts": prompts,
        "batches": settings.batch_sizes,
        "short": _SHORT,
        "long": _SHORT + settings.decode_tokens,
        "repetitions": settings.repetitions,
    }
    version = _version("transformers")
    step("transformers: the open tier")
    try:
        baseline = transformers_decode_speed(open_dir, **kw)
    except Exception as exc:  # recorded: a record never fails the build
        failed = SpeedRecord.failed(f"the open tier: {exc}", engine="transformers")
        return dict.fromkeys(artifacts, failed)
    out: dict[str, SpeedRecord] = {}
    for tier, (optimization, folder) in artifacts.items():
        step(f"transformers: {tier} ({optimization.name})")
        try:
            speed = transformers_decode_speed(folder, **kw)
        except Exception as exc:
            out[tier] = SpeedRecord.failed(str(exc), engine="transformers")
            continue
        out[tier] = _speed_record(
            engine="transformers",
            version=version,
            open_dtype="bfloat16",
            artifact=speed,
            baseline=baseline,
            ceiling=_ceiling(open_dir, folder),
            device="cpu",
            settings=settings,
            now=now,
        )
    return out


def measure_llamacpp(
    open_dir: Path,
    artifacts: Mapping[str, tuple[Optimization, Path]],
    settings: EngineSettings,
    now: datetime,
    step: Step,
) -> dict[str, SpeedRecord]:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        reason = f"llama-cpp-python is not importable here (make llamacpp): {exc}"
        return {t: SpeedRecord.not_measured(reason, engine="llama.cpp") for t in artifacts}
    from release.gguf_export import write_gguf_tier

    windows, _ = _windows(open_dir)
    kw: dict[str, Any] = {
        "prompts": [w[:PROMPT_TOKENS] for w in windows],
        "batches": settings.batch_sizes,
        "decode_tokens": settings.decode_tokens,
        "repetitions": settings.repetitions,
    }
    version = _version("llama-cpp-python")
    out: dict[str, SpeedRecord] = {}
    # llama-cpp-python logs every load through this logger: hundreds of lines per model.
    chatter = logging.getLogger("llama-cpp-python")
    level = chatter.level
    chatter.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="tiergate-f16-") as scratch:
            step("llama.cpp: an f16 GGUF of the open tier (the baseline)")
            base = Path(scratch) / "f16"
            try:
                write_gguf_tier(open_dir, base, quant_type="f16", show_progress=False)
                (f16,) = base.glob("*.gguf")
            except Exception as exc:
                failed = SpeedRecord.failed(f"the f16 baseline: {exc}", engine="llama.cpp")
                return dict.fromkeys(artifacts, failed)
            for tier, (optimization, folder) in artifacts.items():
                step(f"llama.cpp: {tier} ({optimization.name}) and the f16 baseline")
                try:
                    (gguf,) = folder.glob("*.gguf")
                    # In-process loads are cheap: interleave (baseline, artifact, artifact,
                    # baseline) so that load drift on a shared machine hits both alike.
                    runs = [llamacpp_decode_speed(g, **kw) for g in (f16, gguf, gguf, f16)]
                except Exception as exc:
                    out[tier] = SpeedRecord.failed(str(exc), engine="llama.cpp")
                    continue
                out[tier] = _speed_record(
                    engine="llama.cpp",
                    version=version,
                    open_dtype="f16",
                    artifact=_median_by_batch(runs[1:3]),
                    baseline=_median_by_batch([runs[0], runs[3]]),
                    ceiling=_ceiling(open_dir, folder),
                    device="cpu",
                    settings=settings,
                    now=now,
                )
    finally:
        chatter.setLevel(level)
    return out


def _median_by_batch(runs: Sequence[Mapping[int, float]]) -> dict[int, float]:
    import statistics

    return {b: statistics.median(run[b] for run in runs) for b in runs[0]}
