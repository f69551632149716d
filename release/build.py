"""`build_release`: a model folder in, a signed multi-tier release folder out, offline.

The pipeline is the architecture: validate -> check every artifact can be built -> copy the
open tier -> build each optimized artifact and measure it -> write the model card into each
tier -> hash every file -> sign each tier's `model.sig` -> sign the release statement binding
every tier. Output layout::

    OUT/open/...                 the weights as given, README.md (model card), model.sig
    OUT/optimized/...            the first optimized artifact (e.g. compressed-tensors int8)
    OUT/optimized_<name>/...     each further one (e.g. optimized_gguf_q4_0), same files
    OUT/release.dsse.json        the signed release statement (DSSE envelope)
    OUT/terms.md                 the usage terms, when given

Every optimized tier is gated; the grant on ``optimized`` opens every further artifact
unless the publisher gave it its own grant (``BuildOptions.own_grant``, recorded as the
statement's ``optimization["own_grant"]``; the gateway's rule is
``release.formats.grant_tier``). The statement's ``optimization`` and ``fidelity`` maps keep
the first artifact's values under plain keys (what existing readers expect) and every
further artifact's under ``<tier>.<key>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from licensing.keys import PrivateKey
from licensing.layout import SIGNATURE_FILE
from licensing.sigstore_bundle import sign_model_bundle
from licensing.statements import (
    ApprovalPolicy,
    ReleaseStatement,
    TierRecord,
    release_digest,
    sign_release_statement,
    tier_record,
)
from release._build_card import compose_model_card
from release._build_inputs import check_build_options, engine_settings, read_publisher_card
from release._release_layout import (
    MODEL_CARD_FILE,
    OPEN_TIER,
    OPTIMIZED_TIER,
    RELEASE_STATEMENT_FILE,
    TERMS_FILE,
)
from release._statement_maps import statement_maps
from release.architecture import folder_is_sequence_classifier
from release.calibration import CalibrationMethod, CalibrationText
from release.declared import check_declared_weights
from release.engine_measure import (
    DEFAULT_DECODE_TOKENS,
    ArtifactMeasurements,
    measure_artifacts,
)
from release.errors import ReleaseError
from release.fidelity import FidelityReport, OptimizedTier, TierWriter
from release.formats import (
    Optimization,
    own_grant_tiers,
    parse_optimizations,
    tier_names,
)
from release.manifest import TierManifest, build_tier_manifest
from release.quantize import DEFAULT_MAX_SHARD_SIZE, parse_size
from release.safetensors_check import ModelFolderReport, validate_model_folder
from release.tokenization_check import TokenizationReport
from safety.policy import SafetyPolicy, parse_policy

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
    # One name or several (see release.formats): int8, int4, bf16, gguf-q8_0, gguf-q4_0.
    optimize: str | tuple[str, ...] = "int8"
    # int4 group size (32, 64 or 128); None: the format's default (128).
    group_size: int | None = None
    approval: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    base_model: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    # The publisher's card text (a template file's content); None: the model folder's own
    # README.md, if any. Kept verbatim around the generated block (release.card_sections).
    card_template: str | None = None
    # Bytes (or a size like "2GB") per optimized-tier shard; past it the tier is sharded.
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
    # The publisher accepts a tokenizer that does not round-trip sampled text (detection from
    # text unreliable): the gateway then generates with it anyway. Signed into the statement.
    allow_unreliable_text_detection: bool = False
    # Measure the tokenizer round trip at all (release.tokenization_check).
    check_tokenizer: bool = True
    # Calibration of the compressed-tensors artifacts (release.calibration): None picks
    # release.calibration.default_calibration (by architecture and size); "none" is
    # round-to-nearest.
    calibration: CalibrationMethod | None = None
    # The calibration corpus; None: the packaged default (pydoc_data.topics).
    calibration_text: CalibrationText | None = None
    # Further artifacts (--optimize names) that need their own grant; by default the grant
    # on `optimized` opens them all (release.formats.grant_tier).
    own_grant: tuple[str, ...] = ()
    # Decode speed of each artifact against the open tier in its engine (release.
    # engine_measure): True, False, or None for "when the open weights are at most
    # AUTO_SPEED_MAX_BYTES". Off by default in the library; the CLI asks for None.
    measure_speed: bool | None = False
    # A vLLM environment's interpreter: compressed-tensors and bf16 artifacts are then
    # measured in vLLM (speed, and fidelity for compressed-tensors), else in transformers.
    vllm_python: str | None = None
    # Tokens decoded per sequence in each timed speed run.
    speed_tokens: int = DEFAULT_DECODE_TOKENS
    # "tiergate" writes the private format of releases built before the standard formats
    # (int8, int4, bf16 only): for tests of migration and of old releases, never the CLI.
    tier_format: TierWriter = "standard"
    # The output-safety policy (safety.policy; release.safety_policy reads a file): signed
    # into the statement as ``safety_policy`` and named by digest on the card.
    safety_policy: SafetyPolicy | None = None


@dataclass(frozen=True)
class BuiltRelease:
    out_dir: Path
    statement: ReleaseStatement
    release_digest: str
    tiers: Mapping[str, TierManifest]
    fidelity: FidelityReport  # the first optimized artifact's
    warnings: tuple[str, ...]
    # Every optimized tier by name, in build order, with its measured fidelity.
    artifacts: Mapping[str, OptimizedTier] = field(default_factory=dict)
    # The tokenizer round trip measured at build time (None: no tokenizer, or not checked).
    tokenization: TokenizationReport | None = None
    # Each optimized tier's speed record (and vLLM fidelity) by name (release.engine_measure).
    measurements: Mapping[str, ArtifactMeasurements] = field(default_factory=dict)


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


def _check_buildable(source: Path, optimization: Optimization, group_size: int | None) -> None:
    """Refuse an artifact the writers would refuse, before anything is written."""
    if optimization.engine == "gguf":
        from release.gguf_export import check_gguf_exportable

        check_gguf_exportable(source, optimization.gguf_type or "q8_0")
    elif optimization.engine == "compressed-tensors":
        from release.compressed import DEFAULT_CT_GROUP_SIZE, check_compressed_exportable

        check_compressed_exportable(source, optimization.name, group_size or DEFAULT_CT_GROUP_SIZE)


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
    """Build, measure and sign a release of ``model_dir`` into ``out_dir``: the open tier
    and one gated tier per optimized artifact in ``options.optimize``.

    Options are checked before any work (a bad repo id used to fail after the whole build),
    and the release is built in a hidden sibling folder renamed to ``out_dir`` only when
    complete: a failed or interrupted build leaves no half-built folder, and ``force``
    replaces an existing one only once the new one is whole.
    """
    check_build_options(options)
    final = Path(out_dir)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not force:
        raise OutputExistsError(f"{final} is not empty; choose another --out or pass --force")
    work = final.with_name(f".{final.name}.building-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        built = _build_release_into(
            model_dir,
            work,
            key=key,
            options=options,
            now=now,
            show_progress=show_progress,
            on_step=on_step,
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return replace(built, out_dir=final)


def _build_release_into(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    key: PrivateKey,
    options: BuildOptions,
    now: datetime,
    show_progress: bool | None = None,
    on_step: Progress | None = None,
) -> BuiltRelease:
    force = False  # ``out_dir`` is the fresh work folder of build_release
    from release.fidelity import build_optimized_tier

    step = on_step or (lambda _message: None)
    source = Path(model_dir)
    out = Path(out_dir)
    parse_size(options.max_shard_size)  # a bad size fails before anything is written
    # So does a policy this install cannot enforce (an unknown check: UnknownCheckError).
    policy = None if options.safety_policy is None else options.safety_policy.to_dict()
    if policy is not None:
        parse_policy(policy)
    publisher_card = read_publisher_card(source, options)  # so does an unusable card
    optimizations = parse_optimizations(options.optimize)
    names = tier_names(optimizations)
    own_grant = own_grant_tiers(optimizations, options.own_grant)
    step(f"validating {source}")
    report: ModelFolderReport = validate_model_folder(source)
    # Every parameter config.json declares must be stored: loaders would fill a missing one
    # with random values (a 13 KB release declaring gigabytes of them).
    check_declared_weights(report)
    for optimization in optimizations:
        _check_buildable(source, optimization, options.group_size)
    _prepare_out_dir(out, force)
    open_dir = out / OPEN_TIER
    step("copying the open tier")
    _copy_open_tier(source, open_dir)
    artifacts: dict[str, OptimizedTier] = {}
    for name, optimization in zip(names, optimizations, strict=True):
        step(f"building {name} ({optimization.name}) and measuring its fidelity")
        artifacts[name] = build_optimized_tier(
            open_dir,
            out / name,
            method=optimization.name,
            group_size=options.group_size,
            max_shard_size=options.max_shard_size,
            calibration=options.calibration,
            calibration_text=options.calibration_text,
            tier_format=options.tier_format,
            show_progress=show_progress,
        )
    fidelity = artifacts[names[0]].fidelity
    step("measuring each artifact in its engine (speed; fidelity in vLLM)")
    measured = measure_artifacts(
        open_dir,
        {name: (o, out / name) for name, o in zip(names, optimizations, strict=True)},
        settings=engine_settings(options, report.weights_bytes),
        now=now,
        on_step=lambda message: step(f"  {message}"),
        show_progress=show_progress,
    )
    directories = {OPEN_TIER: open_dir, **{name: out / name for name in names}}

    tokenization = None
    warnings = list(report.warnings)
    # A sequence classifier (a guard model) never generates: no sampled text to round-trip.
    if options.check_tokenizer and not folder_is_sequence_classifier(open_dir):
        from release.tokenization_check import check_tokenization

        step("checking that the tokenizer round-trips decoded text")
        tokenization = check_tokenization(
            open_dir, override=options.allow_unreliable_text_detection
        )
        if tokenization is not None and tokenization.warning():
            warnings.append(str(tokenization.warning()))
    tokenization_record = tokenization.to_statement() if tokenization is not None else {}

    step("hashing the tiers")
    # The card lists the digests of every other file, so hash first, then write the card.
    weights = {
        name: build_tier_manifest(
            directory, ignore=(SIGNATURE_FILE, MODEL_CARD_FILE), show_progress=show_progress
        )
        for name, directory in directories.items()
    }
    terms_digest = (
        hashlib.sha256(options.terms.encode("utf-8")).hexdigest() if options.terms else None
    )
    card = compose_model_card(
        options,
        out=out,
        weights=weights,
        names=names,
        optimizations=optimizations,
        artifacts=artifacts,
        measured=measured,
        own_grant=own_grant,
        terms_digest=terms_digest,
        publisher_card=publisher_card,
        tokenization_record=tokenization_record,
        policy=policy,
    )
    for directory in directories.values():
        (directory / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    manifests = {
        name: build_tier_manifest(directory, show_progress=show_progress)
        for name, directory in directories.items()
    }

    step("signing")
    for name, manifest in manifests.items():
        bundle = sign_model_bundle(name, [(f.path, f.sha256, f.size) for f in manifest.files], key)
        (out / name / SIGNATURE_FILE).write_bytes(bundle)
    optimization_map, fidelity_map, measurements = statement_maps(
        names,
        optimizations,
        artifacts,
        measured,
        legacy_format=options.tier_format == "tiergate",
        own_grant=own_grant,
    )
    statement = ReleaseStatement(
        repo_id=options.repo_id,
        version=options.version,
        tiers=(
            _licensing_tier(OPEN_TIER, manifests[OPEN_TIER], gated=False),
            *(_licensing_tier(name, manifests[name], gated=True) for name in names),
        ),
        license=options.license,
        terms_digest=terms_digest,
        approval=options.approval,
        created_at=now,
        optimization=optimization_map,
        fidelity=fidelity_map,
        tokenization=tokenization_record,
        measurements=measurements,
        safety_policy=policy,
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
        warnings=tuple(warnings),
        artifacts=artifacts,
        tokenization=tokenization,
        measurements=measured,
    )
