"""Measure each optimized artifact in the engine users run it in, at build time: decode speed
against the open tier (same engine, same run) and, for compressed-tensors, fidelity in vLLM.

Engines, by artifact:

- compressed-tensors (``int8``, ``int4``) and ``bf16``: vLLM when a vLLM environment is
  given (:attr:`EngineSettings.vllm_python`, its interpreter; the model runs in a child
  process, :mod:`release._vllm_child`), otherwise transformers in this process. The open
  tier runs in the same engine in 16-bit (``bfloat16``), the baseline the byte ceiling is
  stated against; vLLM's CPU int4 kernel has no float32 path anyway.
- GGUF: llama.cpp (``llama-cpp-python``) when it imports, against an ``f16`` GGUF of the
  open tier written for the run; otherwise the record says why it was not measured.

vLLM fidelity is scored on the same held-out windows as :func:`release.fidelity.
measure_fidelity`, from vLLM's prompt log-probabilities (see :class:`~release.engine_records.
EngineFidelity`). The open tier is loaded once per engine for every artifact. Every failure
of an engine is recorded as ``failed`` with its reason, never raised: a record is a fact of
this build, and the transformers fidelity (which gates nothing either) is already measured.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from release.engine_records import EngineFidelity, SpeedPoint, SpeedRecord
from release.formats import Optimization

__all__ = [
    "DEFAULT_DECODE_TOKENS",
    "AUTO_SPEED_MAX_BYTES",
    "ArtifactMeasurements",
    "EngineSettings",
    "hardware_name",
    "measure_artifacts",
    "score_vllm_fidelity",
    "vllm_fidelity_from_rows",
]

DEFAULT_DECODE_TOKENS = 32
# Past this much open weight data speed is measured only when asked: minutes per model.
AUTO_SPEED_MAX_BYTES = 1 << 30
PROMPT_TOKENS = 16
_SHORT = 4
TOP_LOGPROBS = 20
_VLLM_TIMEOUT_S = 1800
Step = Callable[[str], None]


@dataclass(frozen=True)
class EngineSettings:
    """How to measure. ``measure_speed=False`` records ``skip_reason`` as the speed record."""

    measure_speed: bool = True
    skip_reason: str = "not asked for (--no-measure-speed)"
    vllm_python: str | None = None
    vllm_dtype: str = "bfloat16"
    batch_sizes: tuple[int, ...] = (1, 8)
    decode_tokens: int = DEFAULT_DECODE_TOKENS
    repetitions: int = 2


@dataclass(frozen=True)
class ArtifactMeasurements:
    speed: SpeedRecord
    # compressed-tensors artifacts only (vLLM's fidelity); None for the others.
    engine_fidelity: EngineFidelity | None = None


class _EngineFailed(Exception):
    pass


def hardware_name(device: str = "cpu") -> tuple[str, int]:
    """``(GPU name or CPU model, usable CPU cores)`` of this machine."""
    import platform

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if device and device != "cpu":
        return device, cores or 0
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text("utf-8", "replace").splitlines():
            if line.lower().startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return name or platform.processor() or platform.machine() or "unknown CPU", cores or 0


def _config(folder: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((folder / "config.json").read_text("utf-8"))
    return found


def _sixteen_bit_bytes(open_dir: Path) -> int:
    """Bytes of the open tier's weights at 16 bits per floating value (others as stored)."""
    from release.safetensors_check import validate_model_folder

    total = 0
    for file in validate_model_folder(open_dir).files:
        for t in file.tensors:
            numel = math.prod(t.shape)
            floating = t.dtype in ("F64", "F32", "F16", "BF16")
            total += 2 * numel if floating else t.end - t.begin
    return total


def _ceiling(open_dir: Path, artifact_dir: Path) -> float:
    from release.fidelity import _weights_bytes

    return _sixteen_bit_bytes(open_dir) / max(1, _weights_bytes(artifact_dir))


def _windows(open_dir: Path) -> tuple[list[list[int]], int]:
    """The held-out windows of the transformers fidelity record, and vLLM's context length."""
    from release.fidelity import _probe_batch, held_out_texts

    limit = _position_limit(open_dir)
    vocab = int(_config(open_dir)["vocab_size"])
    batch = _probe_batch(open_dir, held_out_texts(), min(64, limit - 1), 8, vocab)
    return [[int(i) for i in row] for row in batch.tolist()], limit


def _position_limit(open_dir: Path) -> int:
    config = _config(open_dir)
    return int(config.get("max_position_embeddings") or config.get("n_positions") or 2048)


def _run_vllm(python: str, job: Mapping[str, Any]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    script = Path(__file__).with_name("_vllm_child.py")
    try:
        proc = subprocess.run(
            [python, "-I", os.fspath(script)],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            timeout=_VLLM_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _EngineFailed(f"vLLM could not run: {exc}") from None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            found: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return found
    tail = [x for x in proc.stderr.strip().splitlines() if x.strip()][-1:]
    raise _EngineFailed(f"vLLM exited with {proc.returncode}: {' '.join(tail) or 'no output'}")


def vllm_fidelity_from_rows(
    reference: Sequence[Sequence[Mapping[int, float]]],
    candidate: Sequence[Sequence[Mapping[int, float]]],
) -> tuple[int, float, float, float, float]:
    """``(positions, top-1 agreement, mean KL over the top tokens, ppl open, ppl optimized)``
    from two runs' rows (token id -> log-probability; key ``-1``: the actual next token's)."""
    agree = total = 0
    kl = nll_ref = nll_cand = 0.0
    for ref_rows, cand_rows in zip(reference, candidate, strict=True):
        for ref, cand in zip(ref_rows, cand_rows, strict=True):
            top_ref = max((t for t in ref if t >= 0), key=lambda t: ref[t])
            top_cand = max((t for t in cand if t >= 0), key=lambda t: cand[t])
            agree += top_ref == top_cand
            total += 1
            nll_ref -= ref[-1]
            nll_cand -= cand[-1]
            # A token outside the candidate's top list gets its lowest listed log-probability.
            floor = min(cand[t] for t in cand if t >= 0)
            kl += sum(math.exp(lp) * (lp - cand.get(t, floor)) for t, lp in ref.items() if t >= 0)
    if not total:
        raise _EngineFailed("vLLM scored no positions")
    return (
        total,
        agree / total,
        max(0.0, kl / total),
        math.exp(nll_ref / total),
        math.exp(nll_cand / total),
    )


def _rows(result: Mapping[str, Any]) -> list[list[dict[int, float]]]:
    return [[{int(k): float(v) for k, v in row.items()} for row in w] for w in result["scored"]]


def score_vllm_fidelity(
    python: str, open_dir: Path, artifact_dir: Path, *, dtype: str = "bfloat16"
) -> EngineFidelity:
    """vLLM's fidelity of one artifact (two vLLM runs; what ``bench/release_formats.py``
    uses). Failures come back as a ``failed`` record."""
    windows, limit = _windows(open_dir)
    job = {"dtype": dtype, "max_model_len": min(limit, 128), "windows": windows}
    try:
        ref = _run_vllm(python, {**job, "folder": os.fspath(open_dir)})
        cand = _run_vllm(python, {**job, "folder": os.fspath(artifact_dir)})
    except _EngineFailed as exc:
        return EngineFidelity.failed(str(exc))
    return _engine_fidelity(ref, cand, dtype)


def _engine_fidelity(ref: Mapping[str, Any], cand: Mapping[str, Any], dtype: str) -> EngineFidelity:
    try:
        positions, top1, kl, ppl_open, ppl_opt = vllm_fidelity_from_rows(_rows(ref), _rows(cand))
    except (_EngineFailed, KeyError, ValueError) as exc:
        return EngineFidelity.failed(f"vLLM's log-probabilities were unusable: {exc}")
    return EngineFidelity(
        "measured",
        engine_version=str(cand.get("vllm", "")),
        dtype=dtype,
        positions=positions,
        top1_agreement=top1,
        mean_kl=kl,
        perplexity_open=ppl_open,
        perplexity_optimized=ppl_opt,
        top_logprobs=TOP_LOGPROBS,
        hardware=hardware_name(str(cand.get("device", "cpu")))[0],
    )


def _speed_record(
    *,
    engine: str,
    version: str,
    open_dtype: str,
    artifact: Mapping[int, float],
    baseline: Mapping[int, float],
    ceiling: float,
    device: str,
    settings: EngineSettings,
    now: datetime,
) -> SpeedRecord:
    hardware, cores = hardware_name(device)
    points = tuple(SpeedPoint(b, artifact[b], baseline[b]) for b in settings.batch_sizes)
    return SpeedRecord(
        "measured",
        engine=engine,
        engine_version=version,
        open_dtype=open_dtype,
        points=points,
        ceiling_ratio=ceiling,
        hardware=hardware,
        cores=cores,
        measured_on=now.date().isoformat(),
        decode_tokens=settings.decode_tokens,
        repetitions=settings.repetitions,
    )


def _speed_job(settings: EngineSettings, windows: list[list[int]]) -> dict[str, Any]:
    return {
        "prompts": [w[:PROMPT_TOKENS] for w in windows],
        "batches": list(settings.batch_sizes),
        "short": _SHORT,
        "long": _SHORT + settings.decode_tokens,
        "repetitions": settings.repetitions,
    }


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _measure_vllm(
    open_dir: Path,
    artifacts: Mapping[str, tuple[Optimization, Path]],
    settings: EngineSettings,
    now: datetime,
    step: Step,
) -> dict[str, ArtifactMeasurements]:
    assert settings.vllm_python is not None
    windows, limit = _windows(open_dir)
    length = min(limit, max(128, PROMPT_TOKENS + _SHORT + settings.decode_tokens + 16))
    wants_fidelity = any(o.engine == "compressed-tensors" for o, _ in artifacts.values())
    job: dict[str, Any] = {"dtype": settings.vllm_dtype, "max_model_len": length}
    if wants_fidelity:
        job |= {"windows": windows, "top_logprobs": TOP_LOGPROBS}
    if settings.measure_speed:
        job |= _speed_job(settings, windows)
    out: dict[str, ArtifactMeasurements] = {}
    step("vLLM: the open tier")
    try:
        ref = _run_vllm(settings.vllm_python, {**job, "folder": os.fspath(open_dir)})
    except _EngineFailed as exc:
        for tier, (optimization, _) in artifacts.items():
            ct = optimization.engine == "compressed-tensors"
            speed = (
                SpeedRecord.failed(f"the open tier: {exc}", engine="vllm")
                if settings.measure_speed
                else SpeedRecord.not_measured(settings.skip_reason)
            )
            out[tier] = ArtifactMeasurements(speed, EngineFidelity.failed(str(exc)) if ct else None)
        return out
    for tier, (optimization, folder) in artifacts.items():
        step(f"vLLM: {tier} ({optimization.name})")
        ct = optimization.engine == "compressed-tensors"
        try:
            cand = _run_vllm(settings.vllm_python, {**job, "folder": os.fspath(folder)})
        except _EngineFailed as exc:
            speed = (
                SpeedRecord.failed(str(exc), engine="vllm")
                if settings.measure_speed
                else SpeedRecord.not_measured(settings.skip_reason)
            )
            out[tier] = ArtifactMeasurements(speed, EngineFidelity.failed(str(exc)) if ct else None)
            continue
        speed = SpeedRecord.not_measured(settings.skip_reason)
        if settings.measure_speed:
            speed = _speed_record(
                engine="vllm",
                version=str(cand.get("vllm", "")),
                open_dtype=settings.vllm_dtype,
                artifact={int(k): float(v) for k, v in cand["speed"].items()},
                baseline={int(k): float(v) for k, v in ref["speed"].items()},
                ceiling=_ceiling(open_dir, folder),
                device=str(cand.get("device", "cpu")),
                settings=settings,
                now=now,
            )
        fidelity = _engine_fidelity(ref, cand, settings.vllm_dtype) if ct else None
        out[tier] = ArtifactMeasurements(speed, fidelity)
    return out


def measure_artifacts(
    open_dir: str | os.PathLike[str],
    artifacts: Mapping[str, tuple[Optimization, str | os.PathLike[str]]],
    *,
    settings: EngineSettings,
    now: datetime,
    on_step: Step | None = None,
    show_progress: bool | None = None,
) -> dict[str, ArtifactMeasurements]:
    """Every artifact's speed record (and vLLM fidelity for compressed-tensors), by tier
    name, in the order given. ``now`` dates the records; ``show_progress`` a bar over the
    engine runs (``None``: when stderr is a terminal)."""
    from release._progress import Progress

    root = Path(open_dir)
    items = {tier: (o, Path(folder)) for tier, (o, folder) in artifacts.items()}
    # Prompt, short run and decode must fit the model's positions (GPT-2's table is hard);
    # the records then state the budget actually used.
    limit = _position_limit(root)
    budget = max(1, min(settings.decode_tokens, limit - PROMPT_TOKENS - _SHORT - 1))
    settings = replace(settings, decode_tokens=budget)
    skipped = SpeedRecord.not_measured(settings.skip_reason)
    no_vllm = EngineFidelity.not_measured(
        "no vLLM environment configured (--vllm-env or TIERGATE_VLLM_ENV)"
    )
    safetensors = {t: v for t, v in items.items() if v[0].engine != "gguf"}
    gguf = {t: v for t, v in items.items() if v[0].engine == "gguf"}
    ct = {t for t, (o, _) in items.items() if o.engine == "compressed-tensors"}
    in_vllm = bool(settings.vllm_python) and bool(ct or (safetensors and settings.measure_speed))
    runs = (1 + len(safetensors) if in_vllm or (safetensors and settings.measure_speed) else 0) + (
        1 + len(gguf) if gguf and settings.measure_speed else 0
    )
    out: dict[str, ArtifactMeasurements] = {}
    with Progress(runs, desc="measuring in engines", unit="run", show_bar=show_progress) as bar:
        started = False

        def step(message: str) -> None:
            nonlocal started
            if started:
                bar.advance(1)
            started = True
            if on_step is not None:
                on_step(message)

        from release._speed_local import measure_llamacpp, measure_transformers

        if in_vllm:
            out |= _measure_vllm(root, safetensors, settings, now, step)
        elif safetensors:
            speeds = (
                measure_transformers(root, safetensors, settings, now, step)
                if settings.measure_speed
                else dict.fromkeys(safetensors, skipped)
            )
            for tier, speed in speeds.items():
                out[tier] = ArtifactMeasurements(speed, no_vllm if tier in ct else None)
        if gguf:
            speeds = (
                measure_llamacpp(root, gguf, settings, now, step)
                if settings.measure_speed
                else dict.fromkeys(gguf, skipped)
            )
            out |= {tier: ArtifactMeasurements(speed) for tier, speed in speeds.items()}
        bar.advance(max(0, runs - bar.done))
    return {tier: out[tier] for tier in items}
