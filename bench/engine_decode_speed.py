"""Benchmark: decode tokens/s of each optimized artifact against the open tier, in the engine
users run it in, same engine and same run (issue 16's speed target).

Usage::

    python bench/engine_decode_speed.py --vllm .venv-vllm/bin/python            # everything
    python bench/engine_decode_speed.py --engines llamacpp --rounds 3
    python bench/engine_decode_speed.py --workdir DIR --keep                   # reuse a build

The model is a random-weight Llama of TinyLlama-1.1B's shape (hidden 2048, 22 layers,
intermediate 5632, 32 heads / 4 KV heads, vocab 32000, untied head: 1.10 B parameters) with
the tests' tiny byte-level BPE tokenizer; random weights decode exactly as fast as trained
ones. Its open tier (float32 safetensors) and the artifacts are written by the release
library's own writers (:func:`release.fidelity.write_optimized_artifact`: ``bf16``, ``int8``,
``int4`` group 128, ``gguf-q8_0``, ``gguf-q4_0``, ``gguf-q4_k_m`` (llama.cpp's quantizer);
:func:`release.gguf_export.write_gguf_tier`
with ``quant_type="f16"`` for llama.cpp's unquantized baseline).

Engines, each model in a fresh process per round, rounds interleaved (A B C D, then D C B A,
...) so that load drift on a shared machine hits every model alike:

- vLLM (``--vllm PYTHON``, a vLLM CPU environment): ``LLM(folder, dtype=..., enforce_eager=
  True)``; the open tier in float32 and in bfloat16 (the ``bf16`` artifact), ``int8`` and
  ``int4`` in bfloat16 (vLLM 0.32's CPU WNA16 kernel has no float32 path).
- llama.cpp (``llama-cpp-python`` in this interpreter): ``f16`` vs ``q8_0``, ``q4_0`` and
  ``q4_k_m``,
  driven through ``llama_decode`` with batches of 1 or 8 sequences.

Decode is separated from prefill: vLLM generates ``--short`` and ``--long`` tokens for the
same prompts (greedy, EOS ignored) and decode tokens/s is ``batch * (long - short) /
(t_long - t_short)``; llama.cpp times its decode steps alone (prefill is one timed call
before). Each figure is the median of ``--reps`` repetitions inside a process, then the
median over rounds. Ratios are against the 16-bit open tier (bf16 / f16) and against float32,
next to the byte-ratio ceiling (linear weights 16 / 8.5 bits for Q8_0, 16 / 4.5 for Q4_0,
16 / 8 for int8, 16 / 4.1 for int4 g128; for the Q4_K_M mix, the f16 / q4_k_m file ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPT_TOKENS = 16
# TinyLlama-1.1B's shape.
SHAPE = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
}
VLLM_MODELS = (  # label, folder, dtype
    ("open fp32", "open", "float32"),
    ("open bf16", "bf16", "bfloat16"),
    ("int8 W8A8", "int8", "bfloat16"),
    ("int4 W4A16 g128", "int4", "bfloat16"),
)
LLAMACPP_MODELS = (
    ("gguf f16", "gguf-f16"),
    ("gguf q8_0", "gguf-q8_0"),
    ("gguf q4_0", "gguf-q4_0"),
    ("gguf q4_k_m", "gguf-q4_k_m"),  # llama.cpp's own quantizer, from our f16 export
)
CEILING = {  # bytes per linear weight of the 16-bit baseline / of the artifact
    "int8 W8A8": 16 / 8,
    "int4 W4A16 g128": 16 / (4 + 16 / 128),
    "gguf q8_0": 16 / 8.5,
    "gguf q4_0": 16 / 4.5,
}


# ---------------------------------------------------------------- building


def build_open_tier(out: Path, *, layers: int, seed: int = 0) -> Path:
    """The float32 open tier, written tensor by tensor in ~2 GB shards (memory: one shard)."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from release.testing import build_tiny_tokenizer

    out.mkdir(parents=True)
    shape = dict(SHAPE, num_hidden_layers=layers)
    config = LlamaConfig(
        **shape,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    config.torch_dtype = "float32"
    config.save_pretrained(str(out))
    build_tiny_tokenizer(out)
    hidden, inter, heads, kv = (
        shape["hidden_size"],
        shape["intermediate_size"],
        shape["num_attention_heads"],
        shape["num_key_value_heads"],
    )
    kv_dim = hidden // heads * kv
    names: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (32000, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [
            (p + "input_layernorm.weight", (hidden,)),
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.k_proj.weight", (kv_dim, hidden)),
            (p + "self_attn.v_proj.weight", (kv_dim, hidden)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "post_attention_layernorm.weight", (hidden,)),
            (p + "mlp.gate_proj.weight", (inter, hidden)),
            (p + "mlp.up_proj.weight", (inter, hidden)),
            (p + "mlp.down_proj.weight", (hidden, inter)),
        ]
    names += [("model.norm.weight", (hidden,)), ("lm_head.weight", (32000, hidden))]
    generator = torch.Generator().manual_seed(seed)
    limit = 2 * 10**9
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for name, dims in names:
        if len(dims) == 1:
            tensor = torch.ones(dims)
        else:
            tensor = torch.randn(dims, generator=generator) * 0.02
        if sizes[-1] and sizes[-1] + tensor.numel() * 4 > limit:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor
        sizes[-1] += tensor.numel() * 4
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
        shard.clear()
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return out


def build_all(work: Path, *, layers: int, engines: list[str]) -> dict[str, float]:
    """Every folder the engines need, skipping those already there; seconds per build."""
    from release.fidelity import write_optimized_artifact
    from release.gguf_export import write_gguf_tier

    seconds: dict[str, float] = {}
    open_dir = work / "open"
    if not open_dir.exists():
        start = time.perf_counter()
        build_open_tier(open_dir, layers=layers)
        seconds["open"] = time.perf_counter() - start
    wanted = []
    if "vllm" in engines:
        wanted += ["bf16", "int8", "int4"]
    if "llamacpp" in engines:
        wanted += ["gguf-f16", "gguf-q8_0", "gguf-q4_0", "gguf-q4_k_m"]
    for name in wanted:
        out = work / name
        if out.exists():
            continue
        start = time.perf_counter()
        if name == "gguf-f16":
            write_gguf_tier(open_dir, out, quant_type="f16", show_progress=False)
        else:
            write_optimized_artifact(
                open_dir,
                out,
                method=name,
                group_size=128,
                max_shard_size="2GB",
                show_progress=False,
            )
        seconds[name] = time.perf_counter() - start
        print(f"# built {name} in {seconds[name]:.0f} s", flush=True)
    return seconds


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".gguf"))


# ---------------------------------------------------------------- engine children


def _prompts(batch: int) -> list[list[int]]:
    # Fixed, distinct token ids inside the tokenizer's range (random weights: any ids do).
    return [[(37 * s + 11 * j) % 1000 + 1 for j in range(PROMPT_TOKENS)] for s in range(batch)]


def vllm_child(
    folder: str, dtype: str, batches: list[int], short: int, long: int, reps: int
) -> None:
    """Run under the vLLM environment: one model, every batch size; prints one JSON line."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    load_start = time.perf_counter()
    llm = LLM(
        model=folder,
        dtype=dtype,
        enforce_eager=True,
        max_model_len=PROMPT_TOKENS + long + 16,
        max_num_seqs=max(batches),
        seed=0,
    )
    load_s = time.perf_counter() - load_start

    def timed(batch: int, n: int) -> float:
        prompts = [TokensPrompt(prompt_token_ids=p) for p in _prompts(batch)]
        params = SamplingParams(
            max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0, detokenize=False
        )
        start = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        assert all(len(o.outputs[0].token_ids) == n for o in outs)
        return elapsed

    result: dict[str, Any] = {"load_s": load_s}
    for batch in batches:
        timed(batch, short)  # warm-up (first-call allocations)
        rates, firsts = [], []
        for _ in range(reps):
            t_short = timed(batch, short)
            t_long = timed(batch, long)
            rates.append(batch * (long - short) / (t_long - t_short))
            firsts.append(t_short)
        result[f"b{batch}"] = {"tok_s": statistics.median(rates), "rates": rates, "t_short": firsts}
    print("RESULT " + json.dumps(result), flush=True)


def llamacpp_child(path: str, batches: list[int], long: int, reps: int, threads: int) -> None:
    """One GGUF in llama.cpp (llama-cpp-python's low-level API, so that one context holds
    several sequences); prints one JSON line."""
    import llama_cpp
    import numpy as np

    load_start = time.perf_counter()
    model = llama_cpp.llama_model_load_from_file(
        path.encode(), llama_cpp.llama_model_default_params()
    )
    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = max(batches)
    params.n_ctx = max(batches) * (PROMPT_TOKENS + long + 16)
    params.n_batch = params.n_ubatch = max(batches) * PROMPT_TOKENS
    params.n_threads = params.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not model or not ctx:
        raise RuntimeError(f"llama.cpp could not load {path}")
    load_s = time.perf_counter() - load_start
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    raw = llama_cpp.llama_batch_init(max(batches) * PROMPT_TOKENS, 0, max(batches))

    def fill(entries: list[tuple[int, int, int, bool]]) -> None:
        raw.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            raw.token[i] = token
            raw.pos[i] = pos
            raw.n_seq_id[i] = 1
            raw.seq_id[i][0] = seq
            raw.logits[i] = logits

    def decode() -> None:
        rc = llama_cpp.llama_decode(ctx, raw)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def greedy(index: int) -> int:
        row = llama_cpp.llama_get_logits_ith(ctx, index)
        return int(np.ctypeslib.as_array(row, shape=(n_vocab,)).argmax())

    def run(batch: int) -> tuple[float, float]:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        prompts = _prompts(batch)
        fill(
            [
                (tok, j, s, j == PROMPT_TOKENS - 1)
                for s, p in enumerate(prompts)
                for j, tok in enumerate(p)
            ]
        )
        start = time.perf_counter()
        decode()
        prefill_s = time.perf_counter() - start
        last = [s * PROMPT_TOKENS + PROMPT_TOKENS - 1 for s in range(batch)]
        # Greedy next tokens fed back, as a real decode loop does.
        start = time.perf_counter()
        for step in range(long):
            fill([(greedy(last[s]), PROMPT_TOKENS + step, s, True) for s in range(batch)])
            decode()
            last = list(range(batch))
        return prefill_s, time.perf_counter() - start

    result: dict[str, Any] = {"load_s": load_s}
    for batch in batches:
        run(batch)  # warm-up
        rates, prefills = [], []
        for _ in range(reps):
            prefill_s, decode_s = run(batch)
            rates.append(batch * long / decode_s)
            prefills.append(prefill_s)
        result[f"b{batch}"] = {
            "tok_s": statistics.median(rates),
            "rates": rates,
            "prefill": prefills,
        }
    llama_cpp.llama_batch_free(raw)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------- the parent


def _child(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            found: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return found
    raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    batches = [int(b) for b in args.batches]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    env["PYTHONPATH"] = ""  # the engine children import only their engine
    plan: list[tuple[str, list[str]]] = []
    me = str(Path(__file__).resolve())
    common = ["--batches", *map(str, batches), "--reps", str(args.reps), "--long", str(args.long)]
    if "vllm" in args.engines:
        for label, folder, dtype in VLLM_MODELS:
            cmd = [args.vllm, me, "--_vllm", str(work / folder), dtype, *common]
            plan.append((label, [*cmd, "--short", str(args.short)]))
    if "llamacpp" in args.engines:
        for label, folder in LLAMACPP_MODELS:
            (gguf,) = (work / folder).glob("*.gguf")
            cmd = [sys.executable, me, "--_llamacpp", str(gguf), *common]
            plan.append((label, [*cmd, "--threads", str(args.threads)]))
    results: dict[str, dict[str, list[float]]] = {label: {} for label, _ in plan}
    for r in range(args.rounds):
        order = plan if r % 2 == 0 else plan[::-1]
        for label, cmd in order:
            before = _load()
            got = _child(cmd, env)
            for batch in batches:
                results[label].setdefault(f"b{batch}", []).append(got[f"b{batch}"]["tok_s"])
            figures = ", ".join(f"b{b} {got[f'b{b}']['tok_s']:.2f}" for b in batches)
            print(
                f"# round {r + 1} {label:18s} {figures} tok/s (load {got['load_s']:.0f} s; "
                f"load avg {before} -> {_load()})",
                flush=True,
            )
    return results


def report(results: dict[str, dict[str, list[float]]], work: Path, batches: list[int]) -> None:
    def med(label: str, batch: int) -> float:
        return statistics.median(results[label][f"b{batch}"])

    sizes = {
        "open fp32": "open",
        "open bf16": "bf16",
        "int8 W8A8": "int8",
        "int4 W4A16 g128": "int4",
        "gguf f16": "gguf-f16",
        "gguf q8_0": "gguf-q8_0",
        "gguf q4_0": "gguf-q4_0",
        "gguf q4_k_m": "gguf-q4_k_m",
    }
    print()
    head = " | ".join(f"b{b} tok/s | b{b} vs 16-bit | b{b} vs fp32" for b in batches)
    print(f"| engine / artifact | weights GB | {head} | byte ceiling vs 16-bit |")
    print("| --- | ---: |" + " ---: | ---: | ---: |" * len(batches) + " ---: |")
    for label in results:
        engine = "llama.cpp" if label.startswith("gguf") else "vLLM"
        base16 = "gguf f16" if engine == "llama.cpp" else "open bf16"
        cells = []
        for b in batches:
            value = med(label, b)
            vs16 = f"{value / med(base16, b):.2f}x" if base16 in results else "-"
            # float32 is vLLM's open tier; llama.cpp has no float32 artifact here.
            fp32 = engine == "vLLM" and "open fp32" in results
            vs32 = f"{value / med('open fp32', b):.2f}x" if fp32 else "-"
            cells.append(f"{value:.2f} | {vs16} | {vs32}")
        ceiling = CEILING.get(label)
        if ceiling is None and label == "gguf q4_k_m":
            # A mix (Q4_K, Q6_K for the head and part of attn_v/ffn_down): the file ratio.
            ceiling = folder_bytes(work / "gguf-f16") / folder_bytes(work / "gguf-q4_k_m")
        ceil = f"{ceiling:.2f}x" if ceiling else "-"
        gb = folder_bytes(work / sizes[label]) / 1e9
        print(f"| {engine} {label} | {gb:.2f} | {' | '.join(cells)} | {ceil} |")
    print()
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["vllm", "llamacpp"])
    parser.add_argument("--vllm", default=None, metavar="PYTHON")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the built models")
    parser.add_argument("--layers", type=int, default=SHAPE["num_hidden_layers"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--batches", nargs="+", default=["1", "8"])
    parser.add_argument("--short", type=int, default=4)
    parser.add_argument("--long", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--_vllm", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_llamacpp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches]
    if args._vllm:
        vllm_child(args._vllm[0], args._vllm[1], batches, args.short, args.long, args.reps)
        return
    if args._llamacpp:
        llamacpp_child(args._llamacpp, batches, args.long, args.reps, args.threads)
        return
    if "vllm" in args.engines and not args.vllm:
        parser.error("--vllm PYTHON (a vLLM CPU environment's interpreter) or --engines llamacpp")
    sys.path.insert(0, str(ROOT))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tiergate-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"# {os.cpu_count()} CPUs, load average {_load()}, models in {work}", flush=True)
        build_all(work, layers=args.layers, engines=args.engines)
        if not args.build_only:
            results = measure(args, work)
            report(results, work, batches)
            print(f"# load average at the end: {_load()}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
