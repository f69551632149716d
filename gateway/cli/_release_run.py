"""Running a release build from the CLI and reporting it; uploading a built release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway.cli._client import api_client
from gateway.cli._release_options import approval_policy, engine_build_options


def run_build(model_dir: Path, out: Path, **kw: Any) -> Any:
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
        approval=approval_policy(kw["approval"], kw["grant_days"], kw["fields"]),
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
        **engine_build_options(kw),
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
    report_measurements(built.measurements)
    click.echo(f"  release digest sha256:{built.release_digest}")
    return built


def report_measurements(measurements: Any) -> None:
    """One line per record of each artifact: vLLM fidelity, then speed per batch size."""
    for name, record in measurements.items():
        engine = record.engine_fidelity
        if engine is not None and engine.status == "measured":
            click.echo(
                f"  vLLM {engine.engine_version} fidelity of {name} ({engine.dtype}): top-1 "
                f"agreement {engine.top1_agreement:.2%}, mean KL {engine.mean_kl:.4g} nats "
                f"(top {engine.top_logprobs}), perplexity ratio {engine.perplexity_ratio:.4f}"
            )
        elif engine is not None:
            click.echo(f"  vLLM fidelity of {name}: {engine.status} ({engine.reason})")
        speed = record.speed
        if speed.status != "measured":
            click.echo(f"  speed of {name}: {speed.status} ({speed.reason})")
            continue
        points = ", ".join(
            f"batch {p.batch_size} {p.tokens_per_s:.1f} vs {p.open_tokens_per_s:.1f} tok/s = "
            f"{p.ratio:.2f}x ({speed.ratio_to_ceiling(p):.0%} of the {speed.ceiling_ratio:.2f}x "
            "ceiling)"
            for p in speed.points
        )
        click.echo(f"  speed of {name} in {speed.engine} {speed.engine_version}: {points}")


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


def upload_folder(folder: Path, gateway: str, token: str | None) -> None:
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


def statement_record_lines(envelope: Any) -> list[str]:
    """The speed and vLLM fidelity records a served release statement signs, one line per
    record (``tiergate release show``); none when the statement has none or is unreadable
    (the gateway verified it on publish; this is a display)."""
    import json

    from licensing.dsse import Envelope
    from licensing.errors import LicensingError
    from licensing.statements import parse_release_statement
    from release.aibom import fidelity_by_tier
    from release.engine_records import measurements_by_tier

    try:
        payload = Envelope.from_json(json.dumps(envelope).encode("utf-8")).payload
        statement = parse_release_statement(payload)
    except (LicensingError, TypeError, ValueError):
        return []
    lines = []
    for tier, records in measurements_by_tier(statement.measurements).items():
        for name, fields in records.items():
            if fields.get("status") != "measured":
                lines.append(f"{name} of {tier}: {fields.get('status')} ({fields.get('reason')})")
                continue
            if name == "speed":
                points = ", ".join(
                    f"batch {b} {fields.get(f'b{b}.ratio')}x"
                    for b in fields.get("batch_sizes", "").split(",")
                    if b
                )
                lines.append(
                    f"speed of {tier} in {fields.get('engine')} {fields.get('engine_version')}: "
                    f"{points} vs the open tier (ceiling {fields.get('ceiling_ratio')}x; "
                    f"{fields.get('hardware')}, {fields.get('measured_on')})"
                )
            else:
                fid = fidelity_by_tier(statement).get(tier, {})
                lines.append(
                    f"{name} of {tier}: top-1 {fid.get('vllm_top1_agreement')}, "
                    f"perplexity ratio {fid.get('vllm_perplexity_ratio')} "
                    f"(vLLM {fields.get('engine_version')}, {fields.get('dtype')})"
                )
    return lines
