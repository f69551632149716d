"""Comparison tables of a model card: the release's tiers side by side, and versions.

Both read only signed values: the tier manifests and fidelity reports of the build (tiers),
or the release statements of earlier versions (versions). Evaluation scores join the same
tables once ``tiergate eval`` attests them (``evaluations``: see :mod:`release.aibom`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from release.aibom import EvaluationResult, fidelity_by_tier, recipe_by_tier

if TYPE_CHECKING:
    from licensing.statements import ReleaseStatement
    from release.model_card import TierCard

__all__ = ["model_index", "tier_comparison_lines", "version_comparison_lines"]


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.2f} MiB" if size >= 1 << 20 else f"{size / 1024:.1f} KiB"


def _ratio(value: str | float | None, digits: int = 3, suffix: str = "") -> str:
    if value is None or value == "":
        return "n/a"
    try:
        return f"{float(value):.{digits}f}{suffix}"
    except ValueError:
        return _cell(str(value))


def _percent(value: str | float | None) -> str:
    if value is None or value == "":
        return "n/a"
    try:
        return f"{float(value):.2%}"
    except ValueError:
        return _cell(str(value))


def _eval_columns(evaluations: Sequence[EvaluationResult]) -> list[tuple[str, str]]:
    return sorted({(r.task, r.metric) for r in evaluations})


def tier_comparison_lines(
    tiers: Sequence[TierCard], evaluations: Sequence[EvaluationResult] = ()
) -> list[str]:
    """``## Comparison across tiers``: open vs each optimized artifact (size, fidelity, and
    one column per attested evaluation metric). Access is in the card's Tiers table; the
    columns here are kept few so the table fits a page column."""
    columns = _eval_columns(evaluations)
    head = [
        "Tier",
        "Format",
        "Size",
        "Weights vs open",
        "Top-1 agreement",
        "Mean KL (nats)",
        "Perplexity ratio",
    ]
    head += [f"{task}: {metric}" for task, metric in columns]
    lines = [
        "## Comparison across tiers",
        "",
        "Every optimized tier against the open tier, on the same held-out text (the signed "
        "fidelity record); the open tier is the reference.",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for tier in tiers:
        fid = tier.fidelity
        row = [
            _cell(tier.name),
            _cell(tier.artifact or ("original" if not tier.gated else "n/a")),
            _mib(tier.manifest.total_size),
        ]
        if fid is None:
            row += ["1.000x (reference)" if not tier.gated else "n/a", "n/a", "n/a", "n/a"]
        else:
            row += [
                _ratio(fid.size_ratio, 3, "x"),
                _percent(fid.top1_agreement),
                _ratio(fid.mean_kl, 4),
                _ratio(fid.perplexity_ratio, 4) if fid.perplexity_open else "n/a",
            ]
        for task, metric in columns:
            found = [
                r.value
                for r in evaluations
                if r.tier == tier.name and (r.task, r.metric) == (task, metric)
            ]
            row.append(_cell(found[0]) if found else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def version_comparison_lines(statements: Sequence[ReleaseStatement]) -> list[str]:
    """``## Comparison across versions``: each version's tiers, total size and fidelity, from
    the signed statements given (newest first as given). Empty for fewer than two."""
    if len(statements) < 2:
        return []
    lines = [
        "## Comparison across versions",
        "",
        "| Version | Tier | Optimization | Size | Top-1 agreement | Mean KL (nats) "
        "| Perplexity ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for statement in statements:
        fidelity = fidelity_by_tier(statement)
        recipe = recipe_by_tier(statement)
        for tier in statement.tiers:
            size = sum(f.size for f in tier.files)
            fid = fidelity.get(tier.name, {})
            default = "original" if not tier.gated else "n/a"
            method = recipe.get(tier.name, {}).get("method", default)
            lines.append(
                f"| {_cell(statement.version)} | {_cell(tier.name)} | {_cell(method)} | "
                f"{_mib(size)} | {_percent(fid.get('top1_agreement'))} | "
                f"{_ratio(fid.get('mean_kl'), 4)} | {_ratio(fid.get('perplexity_ratio'), 4)} |"
            )
    lines.append("")
    return lines


def model_index(
    repo_id: str, version: str, evaluations: Sequence[EvaluationResult]
) -> list[dict[str, object]]:
    """The Hub's ``model-index`` front matter for attested results, ``[]`` when there are
    none: the key is then left out rather than filled with claims.

    One entry named ``repo_id@version``: ``huggingface_hub`` keeps one model name per card
    (with an entry per tier it attributed every score to the last tier's name). The tier is
    in each result's task name and metric name, and in the metric's ``args``; the source
    names the attestation."""
    if not evaluations:
        return []
    ordered = sorted(evaluations, key=lambda r: (r.task, r.tier, r.metric, r.attestation_sha256))
    results: list[dict[str, object]] = [
        {
            "task": {"type": "text-generation", "name": f"{r.task} ({r.tier} tier)"},
            "dataset": {"name": r.dataset or r.task, "type": r.dataset or r.task},
            "metrics": [
                {
                    "type": r.metric,
                    "value": float(r.value),
                    "name": f"{r.task} {r.metric} ({r.tier} tier)",
                    "args": {"tier": r.tier},
                    "verified": False,
                }
            ],
            "source": {
                "name": f"tiergate attestation sha256:{r.attestation_sha256}",
                "url": f"urn:sha256:{r.attestation_sha256}",
            },
        }
        for r in ordered
    ]
    return [{"name": f"{repo_id}@{version}", "results": results}]
