"""Benchmark: fidelity, size and build cost of each optimized artifact format.

Usage::

    python bench/release_formats.py                    # fidelity + size on a trained Llama
    python bench/release_formats.py --steps 1200 --width 256 --layers 4
    python bench/release_formats.py --memory           # peak RSS and GB/min, random ~200 MB Llama
    python bench/release_formats.py --vllm .venv-vllm/bin/python   # + vLLM's figures

Fidelity mode trains a small Llama (cached under ~/.cache/tiergate/release-formats-lm) on the
docstrings of ~70 Python standard-library modules, then builds every artifact (compressed-
tensors int8 / int4 at group 128, 64, 32; GGUF q8_0 / q4_0, and q4_k_m / q5_k_m / q6_k with
llama.cpp's quantizer when llama-cpp-python is installed; bf16) and measures each through
transformers against the open tier on the held-out text of :func:`release.fidelity.
held_out_texts` (the Zen of Python and the argparse, json, fractions and textwrap docs, none
of them trained on): top-1 agreement, mean KL, perplexity ratio, size ratio vs float32.
With llama-cpp-python installed, each GGUF artifact is also run by llama.cpp on the same
windows (a ``# llama.cpp`` line under its row).

Memory mode writes each artifact of a random Llama in a fresh process and prints the peak RSS
above the process's RSS before the call, and the build throughput (GB of open weights per
minute), one thread. Linux only (reads /proc/self/status). ``int4+gptq/layerwise`` forces
the one-block-at-a-time calibration (:mod:`release.calibration_layerwise`) on the same model,
to compare its peak with the whole-model pass's.

``--vllm PYTHON`` scores the compressed-tensors artifacts and the open tier in vLLM under
that interpreter (a vLLM CPU environment), with the implementation a build records
(:func:`release.engine_measure.score_vllm_fidelity`): the same metrics, computed from vLLM's
prompt log-probabilities.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from docstrings_lm import train_model  # bench/ is on sys.path when run as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_GB = 10**9
_MIB = 2**20
# (label, method, int4 group, calibration): every compressed-tensors row is measured
# round-to-nearest ("none") and calibrated, in the same run, on the same held-out text.
ARTIFACTS: tuple[tuple[str, str, int | None, str | None], ...] = (
    ("int8 (ct W8A8) rtn", "int8", None, "none"),
    ("int8 smoothquant", "int8", None, "smoothquant"),
    ("int8 gptq", "int8", None, "gptq"),
    ("int8 smoothquant+gptq", "int8", None, "smoothquant+gptq"),
    ("int8 smoothquant+gptq a=0.8", "int8", None, "smoothquant+gptq@0.8"),
    ("int4 g128 (ct W4A16) rtn", "int4", 128, "none"),
    ("int4 g128 gptq", "int4", 128, "gptq"),
    ("int4 g64 rtn", "int4", 64, "none"),
    ("int4 g64 gptq", "int4", 64, "gptq"),
    ("int4 g32 rtn", "int4", 32, "none"),
    ("int4 g32 gptq", "int4", 32, "gptq"),
    ("int4 g128 mse", "int4-mse", 128, "none"),
    ("gguf-q8_0", "gguf-q8_0", None, None),
    ("gguf-q4_0", "gguf-q4_0", None, None),
    # k-quants: llama.cpp's quantizer (llama-cpp-python); skipped with a note without it.
    ("gguf-q4_k_m", "gguf-q4_k_m", None, None),
    ("gguf-q5_k_m", "gguf-q5_k_m", None, None),
    ("gguf-q6_k", "gguf-q6_k", None, None),
    ("bf16", "bf16", None, None),
)


def fidelity_main(args: argparse.Namespace) -> None:
    from release.calibration import default_calibration_text, read_calibration_text
    from release.fidelity import HELD_OUT_SOURCE, build_optimized_tier

    torch.set_num_threads(args.threads)
    model = train_model(args)
    params = sum(p.numel() for p in _params(model))
    print(
        f"# trained llama {args.layers} x {args.width}, vocab {args.vocab}, {args.steps} steps "
        f"({params / 1e6:.1f} M parameters), held-out text: {HELD_OUT_SOURCE}; "
        f"torch {torch.__version__}, transformers {_version('transformers')}, "
        f"compressed-tensors {_version('compressed_tensors')}, gguf {_version('gguf')}"
    )
    text = (
        read_calibration_text(args.calibration_text)
        if args.calibration_text
        else default_calibration_text()
    )
    print(f"# calibration text: {text.source}, sha256 {text.sha256[:16]}...")
    print(
        f"{'artifact':28s} {'size':>7s} {'top-1':>7s} {'mean KL':>9s} {'ppl open':>9s} "
        f"{'ppl opt':>9s} {'ppl ratio':>9s} {'build s':>8s}"
    )
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-formats-") as tmp:
        for i, (label, method, group, calibration) in enumerate(ARTIFACTS):
            if args.only and not any(label.startswith(x) for x in args.only):
                continue
            out = Path(tmp) / str(i)
            if method in _KQUANTS and _llama_cpp() is None:
                print(f"# {label}: skipped, llama-cpp-python is not installed (make llamacpp)")
                continue
            start = time.perf_counter()
            if method == "int4-mse":
                f = _mse_tier(model, out, group or 128)
            elif calibration and "@" in calibration:
                f = _strength_tier(model, out, method, calibration, text)
            else:
                f = build_optimized_tier(
                    model,
                    out,
                    method=method,
                    group_size=group,
                    calibration=calibration,  # type: ignore[arg-type]
                    calibration_text=text,
                    show_progress=False,
                ).fidelity
            seconds = time.perf_counter() - start
            print(
                f"{label:28s} {f.size_ratio:6.3f}x {f.top1_agreement:7.2%} {f.mean_kl:9.2e} "
                f"{f.perplexity_open:9.3f} {f.perplexity_optimized:9.3f} "
                f"{f.perplexity_ratio:9.4f} {seconds:8.1f}"
            )
            if args.vllm and method in ("int8", "int4") and group in (None, 128):
                _vllm(args.vllm, model, out, label, "float32" if method == "int8" else "bfloat16")
            if method.startswith("gguf-") and _llama_cpp() is not None:
                _llamacpp_fidelity(model, out, label)


_KQUANTS = ("gguf-q4_k_m", "gguf-q5_k_m", "gguf-q6_k")


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp


def _llamacpp_fidelity(open_dir: Path, tier_dir: Path, label: str) -> None:
    """The same metrics with the GGUF file run by llama.cpp (the fidelity record's probe
    batch: held-out text, 8 windows of 64 tokens) against the open tier in transformers."""
    import numpy as np

    from release.fidelity import _compare, _perplexity, _probe_batch, held_out_texts
    from release.loader import load_model

    llama_cpp = _llama_cpp()
    open_model = load_model(open_dir)
    batch = _probe_batch(open_dir, held_out_texts(), 64, 8, int(open_model.config.vocab_size))
    with torch.inference_mode():
        reference = open_model(input_ids=batch).logits
    (path,) = tier_dir.glob("*.gguf")
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=64, logits_all=True, n_threads=1, verbose=False
    )
    rows = []
    for window in batch.tolist():
        llm.reset()
        llm.eval(window)
        rows.append(torch.from_numpy(np.array(llm.scores[: len(window)], dtype=np.float32)))
    candidate = torch.stack(rows)
    top1, kl = _compare(reference, candidate)
    ratio = _perplexity(candidate, batch) / _perplexity(reference, batch)
    print(
        f"#   llama.cpp {llama_cpp.__version__} {label}: top-1 {top1:.2%}, mean KL {kl:.2e}, "
        f"ppl ratio {ratio:.4f}"
    )


def _mse_tier(model: Path, out: Path, group: int) -> Any:
    from release.compressed import write_compressed_tier
    from release.fidelity import measure_fidelity

    tier = write_compressed_tier(
        model,
        out,
        method="int4",
        group_size=group,
        weight_observer="mse",
        calibration="none",
        show_progress=False,
    )
    return measure_fidelity(model, out, method="int4", tensor_errors=tier.tensor_errors)


def _strength_tier(model: Path, out: Path, method: str, spec: str, text: Any) -> Any:
    """A calibrated tier at a smoothing strength other than the default (``method@a``)."""
    from release.compressed import write_compressed_tier
    from release.fidelity import measure_fidelity

    calibration, _, strength = spec.partition("@")
    tier = write_compressed_tier(
        model,
        out,
        method=method,  # type: ignore[arg-type]
        calibration=calibration,  # type: ignore[arg-type]
        calibration_text=text,
        smoothing_strength=float(strength),
        show_progress=False,
    )
    return measure_fidelity(model, out, method=method, tensor_errors=tier.tensor_errors)


def _vllm(python: str, open_dir: Path, tier_dir: Path, label: str, dtype: str) -> None:
    # The build's own implementation (release.engine_measure), so bench and record agree.
    from release.engine_measure import score_vllm_fidelity

    doc = score_vllm_fidelity(python, open_dir, tier_dir, dtype=dtype)
    if doc.status != "measured":
        print(f"#   vLLM {label}: {doc.status}: {doc.reason}")
        return
    print(
        f"#   vLLM {doc.engine_version} ({dtype}) {label}: top-1 {doc.top1_agreement:.2%}, mean "
        f"KL {doc.mean_kl:.2e} (top-{doc.top_logprobs}), ppl ratio {doc.perplexity_ratio:.4f}"
    )


def _params(model_dir: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    return list(load_file(str(model_dir / "model.safetensors")).values())


def _version(module: str) -> str:
    from importlib import metadata

    return metadata.version(module.replace("_", "-"))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure(src: str, out: str, variant: str, max_shard_size: str) -> None:
    """Child process: write one artifact, print peak RSS above the RSS before the call."""
    import compressed_tensors.compressors  # noqa: F401  (imports are not the writer's memory)
    import gguf  # noqa: F401
    import safetensors.torch  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

    from release.fidelity import write_optimized_artifact

    torch.set_num_threads(1)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    method, _, calibration = variant.partition("+")
    if calibration.endswith("/layerwise"):
        # Force the one-block-at-a-time statistics (chosen by size past 8 GiB otherwise).
        import release.calibration_layerwise as layerwise

        layerwise.LAYERWISE_ABOVE_BYTES = 0
        calibration = calibration.removesuffix("/layerwise")
    tier = write_optimized_artifact(
        src,
        out,
        method=method,
        max_shard_size=max_shard_size,
        calibration=calibration or "none",  # type: ignore[arg-type]
        show_progress=False,
    )
    seconds = time.perf_counter() - start
    doc = {
        "peak_above": (_status_kib("VmHWM") - before) * 1024,
        "seconds": seconds,
        "open_bytes": tier.open_weights_bytes,
        "optimized_bytes": tier.optimized_weights_bytes,
        "files": len(tier.weight_files),
    }
    print(json.dumps(doc))


def memory_main(args: argparse.Namespace) -> None:
    from release.testing import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="tiergate-bench-formats-mem-") as tmp:
        root = Path(tmp)
        src = build_tiny_model(root / "open", hidden_size=args.hidden, num_layers=args.mem_layers)
        open_bytes = (src / "model.safetensors").stat().st_size
        print(
            f"# random llama {args.mem_layers} x {args.hidden}, open tier "
            f"{open_bytes / _MIB:.0f} MiB float32, shards of {args.max_shard_size}, 1 thread"
        )
        print(f"{'artifact':22s} {'files':>5s} {'peak MiB':>9s} {'vs open':>8s} {'GB/min':>7s}")
        for method in args.variants:
            if method in _KQUANTS and _llama_cpp() is None:
                print(f"# {method}: skipped, llama-cpp-python is not installed")
                continue
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--_measure",
                    str(src),
                    str(root / method),
                    method,
                    args.max_shard_size,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            rate = r["open_bytes"] / _GB / (r["seconds"] / 60)
            print(
                f"{method:22s} {r['files']:5d} {r['peak_above'] / _MIB:9.1f} "
                f"{r['peak_above'] / open_bytes:7.3f}x {rate:7.2f}"
            )
            shutil.rmtree(root / method, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vllm", default=None, metavar="PYTHON")
    parser.add_argument(
        "--calibration-text", default=None, metavar="FILE", help="default: pydoc_data.topics"
    )
    parser.add_argument("--only", nargs="*", default=None, metavar="LABEL", help="e.g. int8")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--mem-layers", type=int, default=6)
    parser.add_argument("--max-shard-size", default="64MB")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[
            "int8",
            "int8+smoothquant+gptq",
            "int4",
            "int4+gptq",
            "int4+gptq/layerwise",
            "gguf-q8_0",
            "gguf-q4_0",
            "gguf-q4_k_m",
        ],
        help="--memory: artifacts to build (METHOD[+CALIBRATION[/layerwise]])",
    )
    parser.add_argument("--_measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        _measure(*args._measure)
    elif args.memory:
        memory_main(args)
    else:
        fidelity_main(args)


if __name__ == "__main__":
    main()
