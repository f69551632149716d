"""Benchmark: the optimized tier's linear layer, and the quantizer's peak memory.

Usage::

    python bench/release_quantize.py                  # 4096 x 4096 layer, 1 and 32 tokens
    python bench/release_quantize.py --features 2048 --tokens 1 8 64 --repeat 50
    python bench/release_quantize.py --memory         # ~400 MB model, 64MB shards
    python bench/release_quantize.py --memory --hidden 1024 --layers 8 --max-shard-size 64MB

Layer mode prints milliseconds per call and the ratio to ``nn.Linear`` in float32 measured
in this run, plus resident weight bytes. Threads: torch's default for this machine.

Memory mode builds a random Llama of ``--layers`` x ``--hidden`` (float32, one file or
``--open-shards`` shards), quantizes it in a fresh process per run and prints each run's peak
RSS above the process's RSS just before the call (imports done), against the open tier's
size: once into ``--max-shard-size`` shards, and once as a single file (the whole tier held
before it is written; the baseline). Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from release._qlinear import QuantizedLinear
from release._quant_kernels import quantize_int4, quantize_int8

_MIB = 2**20


def _time(layer: torch.nn.Module, x: torch.Tensor, repeat: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            layer(x)
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            layer(x)
            best = min(best, time.perf_counter() - start)
    return best * 1000


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure(src: str, out: str, max_shard_size: str, method: str) -> None:
    """Child process: quantize once, print peak RSS above the RSS before the call as JSON."""
    import safetensors.torch  # noqa: F401  (imports are not the quantizer's memory)
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

    from release.quantize import quantize_model_folder

    torch.set_num_threads(1)
    # "5" resets VmHWM to the current RSS (Linux >= 4.0), so the peak is this call's; where
    # it cannot, VmHWM may include the imports' peak: an overestimate, never an under.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    tier = quantize_model_folder(
        src,
        out,
        method=method,
        max_shard_size=max_shard_size,
        show_progress=False,
    )
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    doc = {
        "rss_before": before * 1024,
        "peak_above": (peak - before) * 1024,
        "seconds": seconds,
        "files": len(tier.weight_files),
        "open_bytes": tier.open_weights_bytes,
        "optimized_bytes": tier.optimized_weights_bytes,
    }
    print(json.dumps(doc))


def _run_child(src: Path, out: Path, max_shard_size: str, method: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--_measure", str(src), str(out), max_shard_size, method],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def memory_main(args: argparse.Namespace) -> None:
    from release.testing import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="tiergate-bench-quantize-") as tmp:
        root = Path(tmp)
        src = build_tiny_model(
            root / "open",
            hidden_size=args.hidden,
            num_layers=args.layers,
            shards=args.open_shards,
        )
        open_bytes = sum(p.stat().st_size for p in src.glob("*.safetensors"))
        print(
            f"# llama {args.layers} x {args.hidden}, open tier {open_bytes / _MIB:.0f} MiB float32 "
            f"in {args.open_shards} file(s), {args.method}, torch {torch.__version__}, 1 thread"
        )
        print(
            f"{'run':28s} {'files':>5s} {'peak MiB':>9s} {'vs open':>8s} {'vs single':>9s} "
            f"{'seconds':>8s}"
        )
        runs = {
            "single file (baseline)": "1TB",
            f"shards of {args.max_shard_size}": args.max_shard_size,
        }
        baseline = 0.0
        for i, (label, size) in enumerate(runs.items()):
            result = _run_child(src, root / f"out{i}", size, args.method)
            peak = result["peak_above"]
            baseline = baseline or peak
            print(
                f"{label:28s} {int(result['files']):5d} {peak / _MIB:9.1f} "
                f"{peak / open_bytes:7.3f}x {peak / baseline:8.3f}x {result['seconds']:8.1f}"
            )


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--_measure":
        _measure(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--memory", action="store_true", help="Measure the quantizer's peak RSS.")
    parser.add_argument("--hidden", type=int, default=1024, help="Memory mode: hidden size.")
    parser.add_argument("--layers", type=int, default=8, help="Memory mode: decoder layers.")
    parser.add_argument("--open-shards", type=int, default=1, help="Memory mode: open shards.")
    parser.add_argument("--max-shard-size", default="64MB", help="Memory mode: shard size.")
    parser.add_argument("--method", choices=["int8", "int4", "bf16"], default="int8")
    args = parser.parse_args()
    if args.memory:
        memory_main(args)
        return
    n = args.features
    torch.manual_seed(0)
    weight = torch.randn(n, n) * 0.02
    reference = torch.nn.Linear(n, n, bias=False)
    reference.weight.data.copy_(weight)
    layers: dict[str, torch.nn.Module] = {"nn.Linear float32": reference}
    for label, bits, kernel in (
        ("int8 _weight_int8pack_mm", 8, True),
        ("int8 dequantize+matmul", 8, False),
        ("int4 g64 dequantize+matmul", 4, False),
    ):
        layer = QuantizedLinear(
            n, n, bits=bits, group_size=64 if bits == 4 else None, bias=False, use_kernel=kernel
        )
        q, scales = quantize_int8(weight) if bits == 8 else quantize_int4(weight, 64)
        layer.qweight.copy_(q)
        layer.scales.copy_(scales)
        layers[label] = layer
    print(f"# {n} x {n} linear, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'layer':30s} {'tokens':>6s} {'ms':>8s} {'vs fp32':>8s} {'weight MiB':>11s}")
    for tokens in args.tokens:
        x = torch.randn(tokens, n)
        base = _time(reference, x, args.repeat)
        for label, layer in layers.items():
            ms = _time(layer, x, args.repeat)
            size = sum(t.numel() * t.element_size() for t in layer.state_dict().values())
            print(f"{label:30s} {tokens:6d} {ms:8.3f} {base / ms:7.2f}x {size / 2**20:11.1f}")


if __name__ == "__main__":
    main()
