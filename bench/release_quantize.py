"""Benchmark: the optimized tier's linear layer (int8 kernel, int4, fallback) against float32.

Usage::

    python bench/release_quantize.py                  # 4096 x 4096 layer, 1 and 32 tokens
    python bench/release_quantize.py --features 2048 --tokens 1 8 64 --repeat 50

Prints milliseconds per call and the ratio to ``nn.Linear`` in float32 measured in this run,
plus resident weight bytes. Threads: torch's default for this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from release._qlinear import QuantizedLinear
from release._quant_kernels import quantize_int4, quantize_int8


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
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
