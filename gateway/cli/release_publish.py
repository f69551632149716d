"""`tiergate release build|publish|verify|list|show|yank`: the publisher's signed releases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import click

from gateway.cli._client import api_client, call, gateway_options, iter_pages

# The names of release.formats.OPTIMIZATIONS (kept literal: importing release here would slow
# `--help`); a test checks the two lists agree.
OPTIMIZE_NAMES = ("int8", "int4", "bf16", "gguf-q8_0", "gguf-q4_0")
QUANT_CHOICE = click.Choice(OPTIMIZE_NAMES)
# release.calibration.CALIBRATION_METHODS, literal for the same reason (a test compares them).
CALIBRATION_NAMES = ("none", "gptq", "smoothquant", "smoothquant+gptq")


class ByteSize(click.ParamType[int]):
    """A size like 500MB, 2GB or 1GiB (or plain bytes), checked when the command line is read."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from release.errors import ReleaseError
        from release.quantize import parse_size

        try:
            return parse_size(value)
        except ReleaseError as exc:
            self.fail(exc.message, param, ctx)


MAX_SHARD_SIZE_OPTION = click.option(
    "--max-shard-size",
    type=ByteSize(),
    default="5GB",
    show_default=True,
    help="Largest optimized-tier weight file (500MB, 2GB, 1GiB...); past it the tier is "
    "split into model-0000k-of-0000n.safetensors with an index.",
)


def _approval(mode: str, grant_days: int, fields: tuple[str, ...]) -> Any:
    from licensing.statements import ApprovalMode, ApprovalPolicy, FieldType, GatedField

    parsed = []
    for spec in fields:
        # NAME[:TYPE[:LABEL]]  e.g. org:text:Organisation  or  country:country
        name, _, rest = spec.partition(":")
        kind, _, label = rest.partition(":")
        parsed.append(
            GatedField(
                name=name,
                label=label or name.replace("_", " ").capitalize(),
                type=cast("FieldType", kind or "text"),
            )  # type: ignore[arg-type]
        )
    return ApprovalPolicy(
        mode=cast("ApprovalMode", mode),
        grant_lifetime_seconds=grant_days * 86400,  # type: ignore[arg-type]
        fields=tuple(parsed),
    )


def build_options(func: Any) -> Any:
    options = [
        click.option("--repo", "repo_id", required=True, metavar="ORG/NAME", help="Repository id."),
        click.option("--version", "version", required=True, help="Release version, e.g. 1.0.0."),
        click.option(
            "--key",
            "key_path",
            required=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Publisher private key (ECDSA P-256 PEM, see `tiergate keys generate`).",
        ),
        click.option(
            "--license", "license_id", default="other", show_default=True, help="SPDX license id."
        ),
        click.option(
            "--terms",
            "terms_path",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Usage terms (Markdown) the gated tier's users accept.",
        ),
        click.option(
            "--optimize",
            type=QUANT_CHOICE,
            multiple=True,
            default=("int8",),
            show_default=True,
            help="An optimized artifact to build (repeatable): int8 / int4 (compressed-tensors, "
            "vLLM and transformers), bf16, gguf-q8_0 / gguf-q4_0 (llama.cpp, Ollama). The first "
            "is tier 'optimized', the others 'optimized_<name>'.",
        ),
        click.option(
            "--own-grant",
            "own_grant",
            type=QUANT_CHOICE,
            multiple=True,
            help="A further --optimize artifact that needs its own grant (repeatable); by "
            "default the grant on tier 'optimized' opens every optimized artifact.",
        ),
        click.option(
            "--group-size",
            type=click.Choice(["32", "64", "128"]),
            default=None,
            help="int4 group size (default 128).",
        ),
        click.option(
            "--calibration",
            type=click.Choice(CALIBRATION_NAMES),
            default=None,
            help="Calibration of int8/int4 (default: smoothquant+gptq for int8, gptq for "
            "int4; none: round-to-nearest).",
        ),
        click.option(
            "--calibration-text",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="UTF-8 text to calibrate on (default: the Python language reference that "
            "ships with CPython). Its sha256 goes into the signed release statement.",
        ),
        click.option(
            "--approval",
            type=click.Choice(["auto", "manual"]),
            default="manual",
            show_default=True,
            help="How access requests to the gated tier are decided.",
        ),
        click.option(
            "--grant-days",
            type=click.IntRange(1, 3650),
            default=30,
            show_default=True,
            help="How long a grant lasts.",
        ),
        click.option(
            "--field",
            "fields",
            multiple=True,
            metavar="NAME[:TYPE[:LABEL]]",
            help="A field requesters fill in (TYPE: text, country, checkbox). Repeatable.",
        ),
        MAX_SHARD_SIZE_OPTION,
        click.option(
            "--allow-unreliable-text-detection",
            "allow_unreliable_text_detection",
            is_flag=True,
            help="Let the gateway watermark generation even when the tokenizer does not "
            "round-trip its own sampled text (detection from text then misses watermarks). "
            "Recorded in the signed release statement.",
        ),
        click.option("--base-model", default=None, help="The model this one derives from."),
        click.option(
            "--intended-use",
            default=None,
            help="The card's Intended use section (Markdown); default: the publisher's own "
            "section of the README or --card-template, else 'Not specified'.",
        ),
        click.option(
            "--limitations",
            default=None,
            help="The card's Limitations section (Markdown); same defaults as --intended-use.",
        ),
        click.option(
            "--card-template",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="Your model card (Markdown, optional YAML front matter), kept verbatim with "
            "the generated sections added; default: MODEL_DIR/README.md.",
        ),
        click.option(
            "--safety-policy",
            "safety_policy",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="The output-safety policy (JSON, TOML or YAML; docs/safety.md), checked "
            "before the build and signed into the release statement.",
        ),
        click.option("--force", is_flag=True, help="Overwrite a non-empty --out folder."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _card_template(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{path} is not UTF-8 text ({exc.reason})") from None


def _run_build(model_dir: Path, out: Path, **kw: Any) -> Any:
    from gateway.db.timeutil import utcnow
    from licensing.keys import load_private_key
    from release.build import BuildOptions, build_release
    from release.calibration import read_calibration_text
    from release.safety_policy import load_policy_file

    # Read first: an unknown check is refused before any work (UnknownCheckError).
    policy = load_policy_file(kw["safety_policy"]) if kw.get("safety_policy") else None
    options = BuildOptions(
        repo_id=kw["repo_id"],
        version=kw["version"],
        license=kw["license_id"],
        terms=kw["terms_path"].read_text("utf-8") if kw["terms_path"] else None,
        optimize=tuple(kw["optimize"]),
        group_size=int(kw["group_size"]) if kw.get("group_size") else None,
        approval=_approval(kw["approval"], kw["grant_days"], kw["fields"]),
        base_model=kw["base_model"],
        max_shard_size=kw["max_shard_size"],
        allow_unreliable_text_detection=kw["allow_unreliable_text_detection"],
        intended_use=kw.get("intended_use"),
        limitations=kw.get("limitations"),
        card_template=(kw["card_template"].read_text("utf-8") if kw.get("card_template") else None),
        calibration=kw.get("calibration"),
        own_grant=tuple(kw.get("own_grant") or ()),
        calibration_text=(
            read_calibration_text(kw["calibration_text"]) if kw.get("calibration_text") else None
        ),
        safety_policy=policy,
    )
    built = build_release(
        model_dir,
        out,
        key=load_private_key(kw["key_path"]),
        options=options,
        now=utcnow(),
        force=kw["force"],
        on_step=lambda message: click.echo(f"· {message}", err=True),
    )
    for warning in built.warnings:
        click.echo(f"warning: {warning}", err=True)
    _report_tokenization(built.tokenization)
    click.echo(f"built {built.statement.release_name} in {built.out_dir}")
    width = max(10, *(len(name) for name in built.tiers))
    for name, manifest in built.tiers.items():
        click.echo(
            f"  {name:<{width}} {len(manifest.files):>3} files  {manifest.total_size:>12,} bytes"
        )
    for name, artifact in built.artifacts.items():
        fid = artifact.fidelity
        click.echo(
            f"  fidelity of {name} ({fid.method}): size {fid.size_ratio:.3f}x, top-1 agreement "
            f"{fid.top1_agreement:.2%}, mean KL {fid.mean_kl:.4g} nats, "
            f"perplexity ratio {fid.perplexity_ratio:.4f}"
        )
    click.echo(f"  release digest sha256:{built.release_digest}")
    return built


def _report_tokenization(report: Any) -> None:
    """The tokenizer round trip: one line, and a loud banner when text detection is unreliable
    (the line is also among the build's warnings)."""
    if report is None:
        click.echo("  tokenizer round trip: no tokenizer found, not measured", err=True)
        return
    click.echo(
        f"  tokenizer round trip: {report.rate:.1%} of tokens (corpus "
        f"{report.corpus.token_rate:.1%}, sampled output {report.samples.token_rate:.1%}): "
        f"text detection {report.text_detection}",
        err=True,
    )
    if not report.reliable:
        banner = "!" * 78
        click.secho(banner, fg="red", bold=True, err=True)
        click.secho(
            "DETECTION FROM TEXT IS UNRELIABLE FOR THIS MODEL'S TOKENIZER",
            fg="red",
            bold=True,
            err=True,
        )
        click.secho(banner, fg="red", bold=True, err=True)


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
    _run_build(model_dir, out, **kw)


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
        folder = _run_build(source, out, **kw).out_dir
    _upload(folder, gateway, token)


def _upload(folder: Path, gateway: str, token: str | None) -> None:
    from release.upload import publish_release_folder

    with api_client(gateway, token, timeout=300) as client:
        bar: dict[str, Any] = {}

        def progress(done: int, total: int) -> None:
            from tqdm import tqdm

            if "bar" not in bar:
                bar["bar"] = tqdm(
                    total=total, unit="B", unit_scale=True, desc="uploading", disable=None
                )
            bar["bar"].n = done
            bar["bar"].refresh()

        result = publish_release_folder(folder, client=client, on_progress=progress)
        if "bar" in bar:
            bar["bar"].close()
    click.echo(
        f"{result.repo_id}@{result.version} {result.status}: uploaded {result.uploaded_blobs} "
        f"blob(s), {result.uploaded_bytes:,} bytes; {result.skipped_blobs} already there"
    )


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
    if publish_it:
        _upload(built.out_dir, gateway, token)


COMMANDS = (build, publish, verify, list_releases, show, yank, rebuild_optimized)
