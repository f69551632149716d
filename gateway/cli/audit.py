"""`tiergate audit safety`: what the safety layer did to every output of a release and what
happened to every report about it, from the signed log alone."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click

from gateway.cli._client import api_client, gateway_options, parse_release_ref, raise_for_problem
from gateway.cli._output import echo_json, echo_table, json_option

__all__ = ["group"]


@click.group(name="audit")
def group() -> None:
    """Audit a release from the transparency log (entries checked against a signed checkpoint)."""


@group.command("safety")
@click.argument("release", metavar="ORG/NAME[@VERSION]")
@click.option(
    "--vkey",
    default=None,
    help="The log's verifier key (pin it); without one the gateway's /log/vkey is trusted.",
)
@gateway_options
@json_option
def safety(release: str, vkey: str | None, gateway: str, token: str | None, as_json: bool) -> None:
    """Every scanned output of RELEASE (policy digest, action, categories, removed-span
    digests) and every report about it (lifecycle events, disclosure deadline)."""
    from gateway.services.safety_audit import audit_safety, read_verified_entries

    repo_id, version = parse_release_ref(release)
    with api_client(gateway, token, timeout=60.0) as http:

        def get(path: str, params: Mapping[str, Any]) -> Any:
            response = http.get(path, params=dict(params) or None)
            raise_for_problem(response, f"reading {path}")
            return response.text if path in ("/log/checkpoint", "/log/vkey") else response.json()

        if vkey is None:
            vkey = str(get("/log/vkey", {}))
            click.echo(
                "warning: trusting the vkey the gateway sent (pass --vkey to pin it)", err=True
            )
        checkpoint, entries = read_verified_entries(get, vkey)
    audit = audit_safety(
        entries,
        repo_id=repo_id,
        version=version,
        checkpoint_size=checkpoint.size,
        checkpoint_origin=checkpoint.origin,
        now=datetime.now(UTC),
    )
    if as_json:
        echo_json(audit.to_dict())
        return
    click.echo(
        f"{audit.release}: {len(audit.outputs)} scanned outputs, {len(audit.reports)} reports; "
        f"log {audit.checkpoint_origin} size {audit.checkpoint_size} verified "
        f"({audit.unreadable_entries} entries not readable with this token)"
    )
    click.echo(
        "outputs by action: " + (", ".join(f"{k} {v}" for k, v in audit.counts().items()) or "none")
    )
    if audit.unscanned_calls:
        click.echo(f"calls logged without a safety record: {audit.unscanned_calls}")
    echo_table(
        ["entry", "choice", "policy", "applied", "categories", "removed", "failed/unavailable"],
        [
            [
                o.log_index,
                o.choice,
                (o.policy_digest or "-")[:19],
                o.applied or "-",
                ",".join(o.categories) or "-",
                len(o.removed_sha256),
                ",".join(
                    [str(f.get("check")) for f in o.failed_checks] + sorted(o.unavailable_checks)
                )
                or "-",
            ]
            for o in audit.outputs
        ],
        empty="no scanned outputs",
    )
    echo_table(
        ["report", "state", "verified", "steps", "disclose after"],
        [
            [
                r.report_id,
                r.state + (" (public by deadline)" if r.public_by_deadline else ""),
                r.verification.get("status", "-"),
                " -> ".join(f"{e['step']}@{e['index']}" for e in r.events),
                r.disclose_after or "-",
            ]
            for r in audit.reports
        ],
        empty="no reports",
    )
