"""The release statement's flat maps of a build: ``optimization`` (recipe), ``fidelity``
and ``measurements``, one artifact after another.

``optimization`` and ``fidelity`` keep the first artifact's values under plain keys (what
existing readers expect) and every further artifact's under ``<tier>.<key>``;
``measurements`` (newer, see :mod:`release.engine_records`) always names the tier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from licensing.statements import format_decimal
from release.engine_measure import ArtifactMeasurements
from release.engine_records import measurement_entries
from release.fidelity import FidelityReport, OptimizedTier
from release.formats import OWN_GRANT_KEY, Optimization

__all__ = ["StatementMaps", "statement_maps"]

_FORMAT_NAMES = {
    "compressed-tensors": "compressed-tensors",
    "bf16": "safetensors",
    "gguf": "gguf",
}
StatementMaps = tuple[dict[str, str | int], dict[str, str], dict[str, str | int]]


def _fidelity_strings(report: FidelityReport) -> dict[str, str]:
    return {
        "size_ratio": format_decimal(report.size_ratio),
        "top1_agreement": format_decimal(report.top1_agreement),
        "mean_kl": format_decimal(report.mean_kl),
        "perplexity_ratio": format_decimal(report.perplexity_ratio),
        "max_tensor_error": format_decimal(report.max_tensor_error),
        "mean_tensor_error": format_decimal(report.mean_tensor_error),
        "probe_positions": str(report.probe_positions),
    }


def _prefixed(tier: str, values: Mapping[str, str | int], primary: bool) -> dict[str, str | int]:
    return dict(values) if primary else {f"{tier}.{k}": v for k, v in values.items()}


def _recipe(method: str, group_size: int | None, keep_dtype: str) -> dict[str, str | int]:
    recipe: dict[str, str | int] = {"method": method, "keep_dtype": keep_dtype}
    if group_size is not None:
        recipe["group_size"] = group_size
    return recipe


def statement_maps(
    names: Sequence[str],
    optimizations: Sequence[Optimization],
    artifacts: Mapping[str, OptimizedTier],
    measured: Mapping[str, ArtifactMeasurements],
    *,
    legacy_format: bool,
    own_grant: Sequence[str],
) -> StatementMaps:
    """``(optimization, fidelity, measurements)`` for the statement; ``legacy_format``: the
    artifacts are in the old ``tiergate`` format."""
    optimization_map: dict[str, str | int] = {}
    fidelity_map: dict[str, str | int] = {}
    measurements: dict[str, str | int] = {}
    for i, (name, optimization) in enumerate(zip(names, optimizations, strict=True)):
        quantized = artifacts[name].quantized
        recipe = _recipe(quantized.method, quantized.group_size, quantized.keep_dtype)
        recipe["format"] = "tiergate" if legacy_format else _FORMAT_NAMES[optimization.engine]
        recipe |= quantized.calibration
        if quantized.quantizer:
            recipe["quantizer"] = quantized.quantizer
        optimization_map |= _prefixed(name, recipe, i == 0)
        figures: dict[str, str | int] = dict(_fidelity_strings(artifacts[name].fidelity))
        record = measured.get(name)
        if record is not None:
            if record.engine_fidelity is not None:
                figures |= record.engine_fidelity.fidelity_entries()
            measurements |= measurement_entries(name, record.speed, record.engine_fidelity)
        fidelity_map |= _prefixed(name, figures, i == 0)
    if len(names) > 1:
        optimization_map["tiers"] = ",".join(names)
    if own_grant:
        optimization_map[OWN_GRANT_KEY] = ",".join(own_grant)
    return optimization_map, {k: str(v) for k, v in fidelity_map.items()}, measurements
