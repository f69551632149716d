"""`tiergate access`: request gated tiers with a signed usage attestation, and review requests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from gateway.cli._client import api_client, call, gateway_options
from gateway.cli._output import (
    DurationType,
    echo_json,
    echo_table,
    format_duration,
    json_option,
    relative_time,
)

_HINTS = {"country": " (ISO code, e.g. FR)", "checkbox": " (true/false)"}
TIER_OPTION = click.option("--tier", default="optimized", show_default=True, help="Gated tier.")


@click.group(name="access")
def group() -> None:
    """Request and review access to gated tiers."""


def split_release(ref: str) -> tuple[str, str, str | None]:
    """``ORG/NAME[@VERSION]`` -> (org, name, version or None)."""
    repo, _, version = ref.partition("@")
    org, sep, name = repo.partition("/")
    if not sep or not org or not name or "/" in name:
        raise click.BadParameter(f"expected ORG/NAME[@VERSION], got {ref!r}")
    return org, name, version or None


def fetch_terms(client: Any, ref: str, tier: str) -> dict[str, Any]:
    org, name, version = split_release(ref)
    params = {"tier": tier, **({"version": version} if version else {})}
    terms: dict[str, Any] = call(client, "GET", f"/api/access/terms/{org}/{name}", params=params)
    return terms


def show_terms(terms: dict[str, Any]) -> None:
    click.echo(f"{terms['repo_id']}@{terms['version']}  tier {terms['tier']}")
    click.echo(f"  license:        {terms['license'] or '-'}")
    click.echo(f"  release digest: {terms['release_digest']}")
    click.echo(f"  terms digest:   {terms['terms_digest'] or '(no terms)'}")
    lifetime = terms["grant_lifetime_seconds"]
    click.echo(f"  approval:       {terms['approval']} (grants last {format_duration(lifetime)})")
    click.echo("  fields:")
    for spec in terms["fields"]:
        extra = f" one of: {', '.join(spec['options'])}" if spec["options"] else ""
        needed = "required" if spec["required"] else "optional"
        hint = {"country": " (ISO code, e.g. FR)", "checkbox": " (true/false)"}.get(
            spec["type"], ""
        )
        click.echo(f"    --field {spec['name']}=...  {spec['label']} [{needed}]{hint}{extra}")
    if terms.get("terms"):
        click.echo("\n" + terms["terms"].rstrip())


@group.command("terms")
@click.argument("release")
@TIER_OPTION
@gateway_options
def terms_command(release: str, tier: str, gateway: str, token: str | None) -> None:
    """Show the terms of RELEASE (ORG/NAME[@VERSION]) and the fields its publisher asks for."""
    with api_client(gateway, token) as client:
        show_terms(fetch_terms(client, release, tier))


def parse_fields(pairs: tuple[str, ...]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--field")
        fields[name.strip()] = value
    return fields


@group.command("request")
@click.argument("release")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your private key (its public half registered with `tiergate keys register`).",
)
@click.option("--field", "field_pairs", multiple=True, help="NAME=VALUE (repeatable).")
@TIER_OPTION
@click.option("--lifetime", type=click.IntRange(60, 24 * 3600), default=3600, show_default=True)
@click.option("--yes", is_flag=True, help="Accept the terms without asking.")
@gateway_options
def request_command(
    release: str,
    key_path: Path,
    field_pairs: tuple[str, ...],
    tier: str,
    lifetime: int,
    yes: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Sign a usage attestation for RELEASE's gated tier and submit it.

    \b
    Example:
      tiergate access request acme/tiny-llama --key dev.pem \\
        --field org="Example Labs" --field use=research --field country=FR --yes
    """
    from gateway.db.timeutil import utcnow
    from licensing.keys import load_private_key
    from licensing.statements import build_usage_attestation, sign_usage_attestation

    key = load_private_key(key_path)
    fields = parse_fields(field_pairs)
    with api_client(gateway, token) as client:
        terms = fetch_terms(client, release, tier)
        account = call(client, "GET", "/api/whoami")["username"]
        if not yes:
            show_terms(terms)
            click.confirm(f"\nAccept these terms as {account!r}?", abort=True)
        attestation = build_usage_attestation(
            repo_id=terms["repo_id"],
            version=terms["version"],
            release_digest=terms["release_digest"],
            tier=tier,
            accepted_terms_digest=terms["terms_digest"],
            fields=fields,
            requester_account=account,
            requester_key_id=key.key_id,
            now=utcnow(),
            lifetime_seconds=lifetime,
        )
        envelope = sign_usage_attestation(attestation, key).decode("utf-8")
        body = {
            "repo_id": terms["repo_id"],
            "version": terms["version"],
            "tier": tier,
            "attestation": envelope,
        }
        created = call(client, "POST", "/api/access/requests", json=body)
    click.echo(f"request {created['id']}: {created['status']}")
    if created.get("grant_id"):
        click.echo(f"grant {created['grant_id']}")
    if created.get("reason"):
        click.echo(f"reason: {created['reason']}")


def echo_requests(rows: list[dict[str, Any]]) -> None:
    echo_table(
        ["REQUEST", "STATUS", "MODEL", "BY", "ASKED", "REASON"],
        [
            [
                row["id"],
                row["status"],
                f"{row['repo_id']}@{row['version']}:{row['tier']}",
                row["requester"],
                relative_time(row["created_at"]),
                row.get("reason"),
            ]
            for row in rows
        ],
        empty="no access requests",
    )


def echo_grants(rows: list[dict[str, Any]]) -> None:
    echo_table(
        ["GRANT", "STATE", "MODEL", "FOR", "EXPIRES", "DECIDED BY", "REASON"],
        [
            [
                row["id"],
                row["state"],
                f"{row['repo_id']}@{row['version']}:{row['tier']}",
                row["grantee"],
                relative_time(row["expires_at"]),
                row["decided_by"] or row["decision"],
                row.get("revoke_reason"),
            ]
            for row in rows
        ],
        empty="no grants",
    )


def describe_grant(row: dict[str, Any]) -> str:
    """One line for the grant a command just changed."""
    reason = f" ({row['revoke_reason']})" if row.get("revoke_reason") else ""
    return (
        f"grant {row['id']}: {row['state']}{reason}, "
        f"{row['repo_id']}@{row['version']}:{row['tier']} for {row['grantee']}, "
        f"expires {relative_time(row['expires_at'])}"
    )


def describe_request(row: dict[str, Any]) -> str:
    reason = f" ({row['reason']})" if row.get("reason") else ""
    return (
        f"request {row['id']}: {row['status']}{reason}, "
        f"{row['repo_id']}@{row['version']}:{row['tier']} by {row['requester']}"
    )


def _echo_access(requests: list[dict[str, Any]], grants: list[dict[str, Any]] | None) -> None:
    echo_requests(requests)
    if grants is not None:
        click.echo()
        echo_grants(grants)


@group.command("status")
@json_option
@gateway_options
def status_command(as_json: bool, gateway: str, token: str | None) -> None:
    """List your requests (with any denial reason) and your grants.

    A pending request waits for the publisher's review; `tiergate pull --tier optimized`
    works once a grant is active.
    """
    with api_client(gateway, token) as client:
        requests = call(client, "GET", "/api/access/requests")
        grants = call(client, "GET", "/api/access/grants")
    if as_json:
        echo_json({"requests": requests, "grants": grants})
        return
    _echo_access(requests, grants)


@group.command("list")
@click.option("--pending", is_flag=True, help="Only requests waiting for a decision.")
@json_option
@gateway_options
def list_command(pending: bool, as_json: bool, gateway: str, token: str | None) -> None:
    """Publishers: requests and grants on your org's releases."""
    params = {"review": "true", **({"status": "pending"} if pending else {})}
    with api_client(gateway, token) as client:
        requests = call(client, "GET", "/api/access/requests", params=params)
        grants = (
            None
            if pending
            else call(client, "GET", "/api/access/grants", params={"review": "true"})
        )
    if as_json:
        echo_json({"requests": requests, **({"grants": grants} if grants is not None else {})})
        return
    _echo_access(requests, grants)


@group.command("approve")
@click.argument("request_id", type=int)
@gateway_options
def approve_command(request_id: int, gateway: str, token: str | None) -> None:
    """Approve pending request REQUEST_ID: a grant is issued."""
    with api_client(gateway, token) as client:
        grant = call(client, "POST", f"/api/access/requests/{request_id}/approve")
    click.echo(describe_grant(grant))


@group.command("deny")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Shown to the requester.")
@gateway_options
def deny_command(request_id: int, reason: str, gateway: str, token: str | None) -> None:
    """Deny pending request REQUEST_ID, saying why."""
    with api_client(gateway, token) as client:
        row = call(
            client, "POST", f"/api/access/requests/{request_id}/deny", json={"reason": reason}
        )
    click.echo(describe_request(row))


@group.command("revoke")
@click.argument("grant_id", type=int)
@click.option("--reason", required=True, help="Recorded and shown to the grantee.")
@gateway_options
def revoke_command(grant_id: int, reason: str, gateway: str, token: str | None) -> None:
    """Revoke GRANT_ID at once."""
    with api_client(gateway, token) as client:
        grant = call(
            client, "POST", f"/api/access/grants/{grant_id}/revoke", json={"reason": reason}
        )
    click.echo(describe_grant(grant))


@group.command("policy")
@click.argument("release")
@TIER_OPTION
@click.option("--mode", type=click.Choice(["auto", "manual"]), help="Change the approval mode.")
@click.option(
    "--lifetime",
    type=DurationType(),
    help="Change the grant lifetime: 90d, 12h, 2w or seconds.",
)
@click.option("--allow", "allow_pairs", multiple=True, help="FIELD=VALUE accepted (repeatable).")
@click.option("--deny", "deny_pairs", multiple=True, help="FIELD=VALUE refused (repeatable).")
@click.option("--max-grants", type=click.IntRange(0), help="Cap on active grants.")
@json_option
@gateway_options
def policy_command(
    release: str,
    tier: str,
    mode: str | None,
    lifetime: timedelta | None,
    allow_pairs: tuple[str, ...],
    deny_pairs: tuple[str, ...],
    max_grants: int | None,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Show the policy versions of RELEASE@VERSION's gated tier, or set a new one."""
    org, name, version = split_release(release)
    if version is None:
        raise click.BadParameter("name the version: ORG/NAME@VERSION", param_hint="RELEASE")
    path = f"/api/access/policies/{org}/{name}/{version}/{tier}"
    with api_client(gateway, token) as client:
        history = call(client, "GET", path)
        changes = (mode, lifetime, max_grants)
        if any(v is not None for v in changes) or allow_pairs or deny_pairs:
            current = history[-1]["policy"]
            body = {
                "mode": mode or current["mode"],
                "grant_lifetime_seconds": int(lifetime.total_seconds())
                if lifetime is not None
                else current["grant_lifetime_seconds"],
                "allow": _lists(allow_pairs) if allow_pairs else current["allow"],
                "deny": _lists(deny_pairs) if deny_pairs else current["deny"],
                "max_grants": max_grants if max_grants is not None else current["max_grants"],
            }
            history = [call(client, "PUT", path, json=body)]
    if as_json:
        echo_json(history)
        return
    for row in history:
        policy = row["policy"]
        rules = [f"allow {k} in {v}" for k, v in policy["allow"].items()]
        rules += [f"deny {k} in {v}" for k, v in policy["deny"].items()]
        cap = policy.get("max_grants")
        click.echo(
            f"v{row['policy_version']}  {policy['mode']} approval, grants last "
            f"{format_duration(policy['grant_lifetime_seconds'])}"
            f"{f', at most {cap} active' if cap is not None else ''}"
            f"{'; ' + '; '.join(rules) if rules else ''}"
            f"  (by {row['created_by'] or 'the release statement'})"
        )


def _lists(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected FIELD=VALUE, got {pair!r}")
        out.setdefault(name.strip(), []).append(value)
    return out


def _attach_link_command() -> None:
    # `tiergate access link` lives beside the download code it drives.
    from gateway.cli.links import command as link_command

    group.add_command(link_command)


_attach_link_command()
