"""`build_release`: a model folder in, a signed two-tier release folder out, offline.

The pipeline is the architecture: validate -> copy the open tier -> build the optimized tier
and measure it -> write the model card into each tier -> hash every file -> sign each tier's
`model.sig` -> sign the release statement binding both tiers. Output layout::

    OUT/open/...           the weights as given, README.md (model card), model.sig
    OUT/optimized/...      the quantized weights, README.md, model.sig
    OUT/release.dsse.json  the signed release statement (DSSE envelope)
    OUT/terms.md           the usage terms, when given
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from licensing.keys import PrivateKey
from licensing.layout import SIGNATURE_FILE
from licensing.sigstore_bundle import sign_model_bundle
from licensing.statements import (
    ApprovalPolicy,
    ReleaseStatement,
    TierRecord,
    format_decimal,
    release_digest,
    sign_release_statement,
    tier_record,
)
from release.declared import check_declared_weights
from release.errors import ReleaseError
from release.fidelity import FidelityReport
from release.manifest import TierManifest, build_tier_manifest
from release.quantize import DEFAULT_MAX_SHARD_SIZE, QuantMethod, parse_size
from release.safetensors_check import ModelFolderReport, validate_model_folder

__all__ = [
    "MODEL_CARD_FILE",
    "OPEN_TIER",
    "OPTIMIZED_TIER",
    "RELEASE_STATEMENT_FILE",
    "SIGNATURE_FILE",
    "TERMS_FILE",
    "BuildOptions",
    "BuiltRelease",
    "OutputExistsError",
    "build_release",
]

OPEN_TIER = "open"
OPTIMIZED_TIER = "optimized"
MODEL_CARD_FILE = "README.md"
RELEASE_STATEMENT_FILE = "release.dsse.json"
TERMS_FILE = "terms.md"
# Files of a model folder that are never part of a tier: ours, or local clutter.
_SKIP_NAMES = frozenset({SIGNATURE_FILE, MODEL_CARD_FILE, ".DS_Store"})


class OutputExistsError(ReleaseError):
    code = "output_exists"


@dataclass(frozen=True)
class BuildOptions:
    repo_id: str
    version: str
    license: str = "other"
    terms: str | None = None
    optimize: QuantMethod = "int8"
    approval: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    base_model: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    # Bytes (or a size like "2GB") per optimized-tier shard; past it the tier is sharded.
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE


@dataclass(frozen=True)
class BuiltRelease:
    out_dir: Path
    statement: ReleaseStatement
    release_digest: str
    tiers: Mapping[str, TierManifest]
    fidelity: FidelityReport
    warnings: tuple[str, ...]


Progress = Callable[[str], None]


def _copy_open_tier(model_dir: Path, target: Path) -> None:
    for source in sorted(model_dir.rglob("*")):
        rel = source.relative_to(model_dir)
        if any(part.startswith(".") for part in rel.parts) or rel.name in _SKIP_NAMES:
            continue
        if source.is_symlink():
            raise ReleaseError(f"{rel}: symlinks are not released; copy the file in instead")
        if source.is_dir():
            continue
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise OutputExistsError(f"{out_dir} is not empty; choose another --out or pass --force")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _fidelity_strings(report: FidelityReport) -> dict[str, str]:
    return {
        "size_ratio": format_decimal(report.size_ratio),
        "top1_agreement": format_decimal(report.top1_agreement),
        "mean_kl": format_decimal(report.mean_kl),
        "max_tensor_error": format_decimal(report.max_tensor_error),
        "mean_tensor_error": format_decimal(report.mean_tensor_error),
        "probe_positions": str(report.probe_positions),
    }


def _licensing_tier(name: str, manifest: TierManifest, *, gated: bool) -> TierRecord:
    return tier_record(name, manifest.files, gated=gated)


def build_release(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    key: PrivateKey,
    options: BuildOptions,
    now: datetime,
    force: bool = False,
    show_progress: bool | None = None,
    on_step: Progress | None = None,
) -> BuiltRelease:
    """Build, measure and sign a two-tier release of ``model_dir`` into ``out_dir``."""
    from release.fidelity import build_optimized_tier
    from release.model_card import TierCard, render_model_card

    step = on_step or (lambda _message: None)
    source = Path(model_dir)
    out = Path(out_dir)
    parse_size(options.max_shard_size)  # a bad size fails before anything is written
    step(f"validating {source}")
    report: ModelFolderReport = validate_model_folder(source)
    # Every parameter config.json declares must be stored: loaders would fill a missing one
    # with random values (a 13 KB release declaring gigabytes of them).
    check_declared_weights(report)
    _prepare_out_dir(out, force)
    open_dir, optimized_dir = out / OPEN_TIER, out / OPTIMIZED_TIER
    step("copying the open tier")
    _copy_open_tier(source, open_dir)
    step(f"building the optimized tier ({options.optimize}) and measuring its fidelity")
    optimized = build_optimized_tier(
        open_dir,
        optimized_dir,
        method=options.optimize,
        max_shard_size=options.max_shard_size,
        show_progress=show_progress,  # type: ignore[arg-type]
    )
    fidelity = optimized.fidelity

    step("hashing the tiers")
    # The card lists the digests of every other file, so hash first, then write the card.
    weights = {
        name: build_tier_manifest(
            directory, ignore=(SIGNATURE_FILE, MODEL_CARD_FILE), show_progress=show_progress
        )
        for name, directory in ((OPEN_TIER, open_dir), (OPTIMIZED_TIER, optimized_dir))
    }
    terms_digest = (
        hashlib.sha256(options.terms.encode("utf-8")).hexdigest() if options.terms else None
    )
    card = render_model_card(
        repo_id=options.repo_id,
        version=options.version,
        license=options.license,
        tiers=(
            TierCard(
                OPEN_TIER,
                weights[OPEN_TIER],
                gated=False,
                description="The weights as published, for everyone.",
            ),
            TierCard(
                OPTIMIZED_TIER,
                weights[OPTIMIZED_TIER],
                gated=True,
                description=f"Weight-only {options.optimize} quantization; needs a grant.",
                revision=OPTIMIZED_TIER,
                fidelity=fidelity,
            ),
        ),
        base_model=options.base_model,
        terms_sha256=terms_digest,
        intended_use=options.intended_use or "",
        limitations=options.limitations or "",
        gated_prompt="The optimized tier is released under signed usage attestations.",
        gated_fields={f.label: f.type for f in options.approval.fields},
    )
    for directory in (open_dir, optimized_dir):
        (directory / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    manifests = {
        OPEN_TIER: build_tier_manifest(open_dir, show_progress=show_progress),
        OPTIMIZED_TIER: build_tier_manifest(optimized_dir, show_progress=show_progress),
    }

    step("signing")
    for name, manifest in manifests.items():
        bundle = sign_model_bundle(name, [(f.path, f.sha256, f.size) for f in manifest.files], key)
        (out / name / SIGNATURE_FILE).write_bytes(bundle)
    statement = ReleaseStatement(
        repo_id=options.repo_id,
        version=options.version,
        tiers=(
            _licensing_tier(OPEN_TIER, manifests[OPEN_TIER], gated=False),
            _licensing_tier(OPTIMIZED_TIER, manifests[OPTIMIZED_TIER], gated=True),
        ),
        license=options.license,
        terms_digest=terms_digest,
        approval=options.approval,
        created_at=now,
        optimization=_recipe(
            optimized.quantized.method,
            optimized.quantized.group_size,
            optimized.quantized.keep_dtype,
        ),
        fidelity=_fidelity_strings(fidelity),
    )
    envelope = sign_release_statement(statement, key)
    (out / RELEASE_STATEMENT_FILE).write_bytes(envelope.to_json())
    if options.terms:
        (out / TERMS_FILE).write_text(options.terms, encoding="utf-8")
    return BuiltRelease(
        out_dir=out,
        statement=statement,
        release_digest=release_digest(envelope.payload),
        tiers=manifests,
        fidelity=fidelity,
        warnings=report.warnings,
    )


def _recipe(method: str, group_size: int | None, keep_dtype: str) -> dict[str, str | int]:
    recipe: dict[str, str | int] = {"method": method, "keep_dtype": keep_dtype}
    if group_size is not None:
        recipe["group_size"] = group_size
    return recipe
