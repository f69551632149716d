"""`tiergate release rebuild-optimized`: a release in the old tiergate format rebuilt as a
new version with standard-format tiers."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli._client import gateway_options
from gateway.cli._release_options import (
    CALIBRATION_NAMES,
    MAX_SHARD_SIZE_OPTION,
    QUANT_CHOICE,
    engine_build_options,
    engine_options,
)
from gateway.cli._release_run import report_measurements, upload_folder

__all__ = ["COMMANDS"]


@click.command("rebuild-optimized")
@click.argument("release_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--version", "version", required=True, help="The NEW version, e.g. 1.0.1.")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Publisher private key that signs the new version.",
)
@click.option(
    "--old-key",
    "old_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key the old release was signed with, if not --key's (repeatable).",
)
@click.option(
    "--optimize",
    type=QUANT_CHOICE,
    multiple=True,
    help="Artifacts of the new version (default: the old methods in standard formats).",
)
@click.option("--calibration", type=click.Choice(CALIBRATION_NAMES), default=None)
@MAX_SHARD_SIZE_OPTION
@click.option("--publish", "publish_it", is_flag=True, help="Publish the new version too.")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out folder.")
@engine_options
@gateway_options
def rebuild_optimized(
    release_dir: Path,
    out: Path,
    version: str,
    key_path: Path,
    old_keys: tuple[Path, ...],
    optimize: tuple[str, ...],
    calibration: str | None,
    max_shard_size: int,
    publish_it: bool,
    force: bool,
    gateway: str,
    token: str | None,
    measure_speed: bool | None,
    speed_tokens: int,
    vllm_env: Path | None,
) -> None:
    """Rebuild RELEASE_DIR (a built release whose optimized tier is in the old tiergate
    format) as a NEW version with standard-format tiers, signed like any build.

    The old folder is only read and the old version is never rewritten; its tiers keep
    loading through tiergate. Repo, license, terms and approval policy carry over.

    \b
    Example:
      tiergate release rebuild-optimized ./tiny-1.0.0 --out ./tiny-1.0.1 \\
          --version 1.0.1 --key publisher.pem --publish
    """
    from dataclasses import replace

    from gateway.db.timeutil import utcnow
    from licensing.keys import load_private_key, load_public_key
    from release.build import BuildOptions
    from release.migrate import legacy_tiers, read_signed_release, rebuild_optimized

    key = load_private_key(key_path)
    trusted = [load_public_key(p) for p in old_keys] or [key.public_key]
    old = read_signed_release(release_dir, trusted)
    for tier, method in legacy_tiers(release_dir, old).items():
        click.echo(f"· {old.release_name} {tier}: tiergate {method}", err=True)
    options = replace(
        BuildOptions(repo_id=old.repo_id, version=version),
        max_shard_size=max_shard_size,
        calibration=calibration,  # type: ignore[arg-type]
        **engine_build_options(
            {"measure_speed": measure_speed, "speed_tokens": speed_tokens, "vllm_env": vllm_env}
        ),
    )
    built = rebuild_optimized(
        release_dir,
        out,
        version=version,
        key=key,
        now=utcnow(),
        trusted_keys=trusted,
        optimize=optimize,
        options=options,
        force=force,
    )
    click.echo(f"built {built.statement.release_name} in {built.out_dir}")
    for name, artifact in built.artifacts.items():
        fid = artifact.fidelity
        click.echo(
            f"  {name} ({fid.method}): top-1 agreement {fid.top1_agreement:.2%}, "
            f"perplexity ratio {fid.perplexity_ratio:.4f}"
        )
    report_measurements(built.measurements)
    if publish_it:
        upload_folder(built.out_dir, gateway, token)


COMMANDS = (rebuild_optimized,)
