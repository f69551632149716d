"""The card's per-artifact table: fidelity through transformers and through vLLM, and decode
speed against the open tier in the artifact's engine, from the records the statement signs.

Figures are shown with what they were measured on (engine, version, hardware, date, token
budget) because a speed record is a fact about one machine; a record that was not measured
says why instead of leaving a blank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from release.engine_records import MEASURED, EngineFidelity, SpeedRecord

if TYPE_CHECKING:
    from release.model_card import TierCard

__all__ = ["artifact_record_lines"]


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _engine_fidelity_cell(record: EngineFidelity | None) -> str:
    if record is None:
        return "n/a (not compressed-tensors)"
    if record.status != MEASURED:
        return record.status.replace("_", " ")
    return (
        f"{record.top1_agreement:.2%} / {record.mean_kl:.3g} / {record.perplexity_ratio:.4f} "
        f"({_cell(record.dtype)})"
    )


def _speed_cell(record: SpeedRecord | None, batch: int) -> str:
    point = record.point(batch) if record is not None else None
    if record is None or point is None:
        return "n/a"
    return (
        f"{point.tokens_per_s:.1f} vs {point.open_tokens_per_s:.1f} = **{point.ratio:.2f}x** "
        f"({record.ratio_to_ceiling(point):.0%} of ceiling)"
    )


def _speed_engine(record: SpeedRecord | None) -> str:
    if record is None:
        return "n/a"
    if record.status != MEASURED:
        name = f"{_cell(record.engine)}: " if record.engine else ""
        return f"{name}{record.status.replace('_', ' ')}"
    return f"{_cell(record.engine)} {_cell(record.engine_version)} (open tier {record.open_dtype})"


def _notes(tier: TierCard) -> list[str]:
    notes: list[str] = []
    speed, engine = tier.speed, tier.engine_fidelity
    if speed is not None and speed.status == MEASURED:
        notes.append(
            f"- `{_cell(tier.name)}` speed: {_cell(speed.hardware)}, {speed.cores} cores, "
            f"{_cell(speed.measured_on)}; {speed.decode_tokens} decode tokens per sequence, "
            f"median of {speed.repetitions}; byte ceiling {speed.ceiling_ratio:.2f}x."
        )
    elif speed is not None:
        status = speed.status.replace("_", " ")
        notes.append(f"- `{_cell(tier.name)}` speed {status}: {_cell(speed.reason)}.")
    if engine is not None and engine.status == MEASURED:
        notes.append(
            f"- `{_cell(tier.name)}` vLLM fidelity: vLLM {_cell(engine.engine_version)} on "
            f"{_cell(engine.hardware)}, {engine.positions} positions, KL over each position's "
            f"top {engine.top_logprobs} tokens (a lower bound)."
        )
    elif engine is not None:
        notes.append(
            f"- `{_cell(tier.name)}` vLLM fidelity {engine.status.replace('_', ' ')}: "
            f"{_cell(engine.reason)}."
        )
    return notes


def artifact_record_lines(tiers: Sequence[TierCard]) -> list[str]:
    """``## Speed and engine fidelity``: one row per optimized artifact; empty when no tier
    carries a record (cards of releases built before the records)."""
    rows = [t for t in tiers if t.speed is not None or t.engine_fidelity is not None]
    if not rows:
        return []
    batches = sorted({p.batch_size for t in rows if t.speed for p in t.speed.points}) or [1, 8]
    head = [
        "Tier",
        "Fidelity, transformers (top-1 / mean KL / ppl ratio)",
        "Fidelity, vLLM (top-1 / mean KL / ppl ratio)",
        "Speed measured in",
        *(f"Batch {b}: tok/s vs open" for b in batches),
    ]
    lines = [
        "## Speed and engine fidelity",
        "",
        "Measured at build time for each optimized artifact against the open tier, in the same "
        "engine and the same run, and signed in the release statement (`measurements`). Decode "
        "tokens/s; the ceiling is the bytes ratio of 16-bit open weights to the artifact's, the "
        "most a memory-bound decoder can gain. Speed depends on the machine: measure yours.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    notes: list[str] = []
    for tier in rows:
        fid = tier.fidelity
        transformers = (
            f"{fid.top1_agreement:.2%} / {fid.mean_kl:.3g} / {fid.perplexity_ratio:.4f}"
            if fid is not None
            else "n/a"
        )
        cells = [
            f"`{_cell(tier.name)}` ({_cell(tier.artifact or '')})",
            transformers,
            _engine_fidelity_cell(tier.engine_fidelity),
            _speed_engine(tier.speed),
            *(_speed_cell(tier.speed, b) for b in batches),
        ]
        lines.append("| " + " | ".join(cells) + " |")
        notes += _notes(tier)
    return [*lines, "", *notes, ""]
