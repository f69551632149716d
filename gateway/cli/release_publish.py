"""`tiergate release build|publish|verify|list|show|yank`: the publisher's signed releases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gateway.cli._client import api_client, call, gateway_options, iter_pages
from gateway.cli._release_options import (
    CALIBRATION_NAMES,
    MAX_SHARD_SIZE_OPTION,
    OPTIMIZE_NAMES,
    QUANT_CHOICE,
    build_options,
)
from gateway.cli._release_run import run_build, statement_record_lines, upload_folder

__all__ = [
    "CALIBRATION_NAMES",
    "COMMANDS",
    "LIST_PAGE_SIZE",
    "MAX_SHARD_SIZE_OPTION",
    "OPTIMIZE_NAMES",
    "QUANT_CHOICE",
]


@click.command("build")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the release (open/, optimized/, release.dsse.json).",
)
@build_options
def build(model_dir: Path, out: Path, **kw: Any) -> None:
    """Validate MODEL_DIR, build the optimized tier, sign both tiers and the release, offline.

    \b
    Example:
      tiergate release build ./tiny --out ./tiny-release --repo acme/tiny \\
          --version 1.0.0 --key publisher.pem --license apache-2.0 --terms terms.md
    """
    run_build(model_dir, out, **kw)


@click.command("publish")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build SOURCE (a model folder) into this folder first.",
)
@build_options
@gateway_options
def publish(source: Path, out: Path | None, gateway: str, token: str | None, **kw: Any) -> None:
    """Upload a built release folder (or build MODEL_DIR with --out) and publish it.

    Resumable: run it again after an interruption and only what is missing is sent.
    """
    folder = source
    if not (source / "release.dsse.json").is_file():
        if out is None:
            raise click.UsageError(f"{source} is not a built release: pass --out to build it first")
        folder = run_build(source, out, **kw).out_dir
    upload_folder(folder, gateway, token)


# `build_options` makes --repo/--version/--key required, which publish of a built folder
# does not need: relax them there.
for _param in publish.params:
    if _param.name in {"repo_id", "version", "key_path"}:
        _param.required = False


@click.command("verify")
@click.argument("tier_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The publisher's public key (PEM).",
)
@click.option(
    "--signature",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Signature bundle (default TIER_DIR/model.sig).",
)
def verify(tier_dir: Path, key_path: Path, signature: Path | None) -> None:
    """Verify a tier folder: signature, every file's sha256, nothing missing or extra."""
    from licensing.keys import load_public_key
    from release.verify import verify_tier

    key = load_public_key(key_path)
    result = verify_tier(tier_dir, key, signature_file=signature)
    click.echo(f"OK {tier_dir}: signature by key {key.key_id[:16]}… verifies")
    click.echo(f"   manifest sha256:{result.manifest.manifest_digest}")
    click.echo(
        f"   {result.files} files, {result.total_bytes:,} bytes hashed, all match; no extra files"
    )


# Releases asked for per request; the listing follows the gateway's `Link` headers.
LIST_PAGE_SIZE = 100


@click.command("list")
@click.option("--author", default=None, help="Only releases of this org.")
@click.option("--search", default=None, help="Only repo ids containing this text.")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=None,
    help="Stop after this many releases (default: all, fetched page by page).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one per release.")
@gateway_options
def list_releases(
    author: str | None,
    search: str | None,
    limit: int | None,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """List releases on the gateway: published and yanked, plus your org's pending ones.

    \b
    Examples:
      tiergate release list
      tiergate release list --author acme --search tiny --limit 20
    """
    params: dict[str, str | int] = {"limit": LIST_PAGE_SIZE}
    params.update({k: v for k, v in (("author", author), ("search", search)) if v})
    count = 0
    with api_client(gateway, token) as client:
        rows = iter_pages(
            client,
            "/api/releases",
            params=params,
            what="listing releases",
            max_items=limit,
        )
        for row in rows:
            count += 1
            if as_json:
                click.echo(json.dumps(row, sort_keys=True))
                continue
            gated = ",".join(row["gated_tiers"]) or "-"
            note = f"  (yanked: {row['yank_reason']})" if row["status"] == "yanked" else ""
            ref = f"{row['repo_id']}@{row['version']}"
            click.echo(
                f"{ref:<40} {row['status']:<10} license={row['license']} gated={gated}{note}"
            )
    if not count and not as_json:
        click.echo("no releases")


def _split_ref(ref: str) -> tuple[str, str | None]:
    repo, _, version = ref.partition("@")
    if repo.count("/") != 1:
        raise click.BadParameter(f"expected ORG/NAME[@VERSION], got {ref!r}")
    return repo, version or None


@click.command("show")
@click.argument("ref", metavar="ORG/NAME[@VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@gateway_options
def show(ref: str, as_json: bool, gateway: str, token: str | None) -> None:
    """Show a release: status, tiers, files with sizes and digests, fidelity."""
    repo, version = _split_ref(ref)
    path = f"/api/releases/{repo}" + (f"/{version}" if version else "")
    with api_client(gateway, token) as client:
        body = call(client, "GET", path, what=f"reading {ref}")
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(f"{body['repo_id']}@{body['version']}  {body['status']}  license={body['license']}")
    if body.get("yank_reason"):
        click.echo(f"yanked: {body['yank_reason']}")
    click.echo(f"statement sha256:{body['statement_digest']}  signer {body['signer_key_id'][:16]}…")
    click.echo(f"approval: {body['approval'].get('mode')}")
    for tier in body["tiers"]:
        access = "gated" if tier["gated"] else "open"
        click.echo(f"tier {tier['name']} ({access}), {tier['total_size']:,} bytes")
        for f in tier["files"]:
            click.echo(f"  {f['path']:<40} {f['size']:>12,}  {f['sha256'][:16]}…")
    for line in statement_record_lines(body.get("statement")):
        click.echo(line)


@click.command("yank")
@click.argument("ref", metavar="ORG/NAME@VERSION")
@click.option("--reason", required=True, help="Why, shown to everyone who looks.")
@gateway_options
def yank(ref: str, reason: str, gateway: str, token: str | None) -> None:
    """Hide a release from new downloads, saying why."""
    repo, version = _split_ref(ref)
    if version is None:
        raise click.BadParameter("name the version to yank: ORG/NAME@VERSION")
    with api_client(gateway, token) as client:
        call(
            client,
            "POST",
            f"/api/releases/{repo}/{version}/yank",
            what=f"yanking {ref}",
            json={"reason": reason},
        )
    click.echo(f"yanked {repo}@{version}: {reason}")


COMMANDS = (build, publish, verify, list_releases, show, yank)
