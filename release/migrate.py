"""Rebuild a release whose optimized tiers are in the old ``tiergate`` format as a NEW version.

A signed version is immutable, so migration never touches the old folder or its statement:
:func:`rebuild_optimized` checks the old release (its statement's signature, its open tier's
files against the statement, that some optimized tier really is ``quant_method: tiergate``),
then builds and signs a new version from that open tier with :func:`release.build.build_release`,
carrying the repo id, license, terms and approval policy over and mapping the old methods to
the standard artifacts (``int8`` -> compressed-tensors W8A8, ``int4`` -> W4A16, ``bf16`` ->
``bf16``). The old tiers keep loading through :mod:`release.loader`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from licensing.keys import PrivateKey, PublicKey
from licensing.layout import SIGNATURE_FILE
from licensing.statements import ReleaseStatement
from release.build import (
    OPEN_TIER,
    RELEASE_STATEMENT_FILE,
    TERMS_FILE,
    BuildOptions,
    BuiltRelease,
    build_release,
)
from release.errors import RebuildRefusedError

__all__ = ["legacy_tiers", "read_signed_release", "rebuild_optimized"]

# The old format's methods and the standard artifact each becomes.
_STANDARD_OF = {"int8": "int8", "int4": "int4", "bf16": "bf16"}


def read_signed_release(
    release_dir: str | os.PathLike[str], trusted_keys: Iterable[PublicKey]
) -> ReleaseStatement:
    """The release statement of a built release folder, its signature checked."""
    from licensing.errors import LicensingError
    from licensing.statements import verify_release_statement

    path = Path(release_dir) / RELEASE_STATEMENT_FILE
    try:
        return verify_release_statement(path.read_bytes(), list(trusted_keys)).release
    except OSError as exc:
        raise RebuildRefusedError(f"{path}: not a built release folder: {exc}") from None
    except LicensingError as exc:
        raise RebuildRefusedError(f"{path}: {exc.message}") from None


def legacy_tiers(release_dir: Path, statement: ReleaseStatement) -> dict[str, str]:
    """Optimized tiers of the release in the ``tiergate`` format -> their method."""
    from release.loader import read_quantization_config, tier_format

    found: dict[str, str] = {}
    for record in statement.tiers:
        folder = release_dir / record.name
        if not record.gated or not folder.is_dir() or tier_format(folder) != "tiergate":
            continue
        config = read_quantization_config(folder) or {}
        found[record.name] = str(config.get("method", ""))
    return found


def _check_open_tier(release_dir: Path, statement: ReleaseStatement) -> Path:
    """The open tier folder, after checking its files are the ones the statement signed."""
    from release.manifest import build_tier_manifest

    open_dir = release_dir / OPEN_TIER
    record = statement.tier(OPEN_TIER)
    present = build_tier_manifest(open_dir, ignore=(SIGNATURE_FILE,), show_progress=False)
    signed = {(f.path, f.sha256, f.size) for f in record.files}
    if {(f.path, f.sha256, f.size) for f in present.files} != signed:
        raise RebuildRefusedError(
            f"{open_dir}: the open tier's files differ from the signed release statement"
        )
    return open_dir


def rebuild_optimized(
    release_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    version: str,
    key: PrivateKey,
    now: datetime,
    trusted_keys: Sequence[PublicKey] = (),
    optimize: Sequence[str] = (),
    options: BuildOptions | None = None,
    force: bool = False,
    show_progress: bool | None = None,
) -> BuiltRelease:
    """Build and sign ``version`` of the release in ``release_dir`` with standard-format
    optimized tiers, into ``out_dir`` (the old folder is only read).

    ``trusted_keys``: keys the old statement may be signed with (default: ``key``'s own).
    ``optimize``: the new artifacts (default: the old methods as standard artifacts).
    ``options``: other build settings (``calibration``, ``max_shard_size``...); repo id,
    version, license, terms, approval and ``optimize`` are set here.
    """
    root = Path(release_dir)
    statement = read_signed_release(root, trusted_keys or (key.public_key,))
    if version == statement.version:
        raise RebuildRefusedError(
            f"version {version} is the release being migrated; a signed version is never "
            "rewritten, choose a new one"
        )
    legacy = legacy_tiers(root, statement)
    if not legacy:
        raise RebuildRefusedError(
            f"{statement.release_name} has no optimized tier in the old tiergate format; "
            "nothing to migrate"
        )
    open_dir = _check_open_tier(root, statement)
    terms = _terms(root, statement)
    base = options or BuildOptions(repo_id=statement.repo_id, version=version)
    build_options = replace(
        base,
        repo_id=statement.repo_id,
        version=version,
        license=statement.license,
        terms=terms,
        optimize=tuple(optimize) or _standard_optimize(legacy),
        approval=statement.approval,
    )
    return build_release(
        open_dir,
        out_dir,
        key=key,
        options=build_options,
        now=now,
        force=force,
        show_progress=show_progress,
    )


def _standard_optimize(legacy: dict[str, str]) -> tuple[str, ...]:
    methods = [_STANDARD_OF.get(method) for method in legacy.values()]
    known = tuple(dict.fromkeys(m for m in methods if m is not None))
    return known or ("int8",)


def _terms(root: Path, statement: ReleaseStatement) -> str | None:
    import hashlib

    if statement.terms_digest is None:
        return None
    try:
        text = (root / TERMS_FILE).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RebuildRefusedError(f"{root / TERMS_FILE}: the release's terms: {exc}") from None
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != statement.terms_digest:
        raise RebuildRefusedError(f"{root / TERMS_FILE}: differs from the signed terms digest")
    return text
