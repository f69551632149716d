"""`tiergate access`: request gated tiers with a signed usage attestation, and review requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway.cli._client import api_client, call, gateway_options

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
    click.echo(f"  approval:       {terms['approval']} (grants last {lifetime} s)")
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
    for row in rows:
        reason = f"  reason: {row['reason']}" if row.get("reason") else ""
        click.echo(
            f"request {row['id']:>4}  {row['status']:<8} {row['repo_id']}@{row['version']}"
            f"#{row['tier']}  by {row['requester']}  fields {row['fields']}{reason}"
        )


def echo_grants(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        decided = row["decided_by"] or row["decision"]
        reason = f"  reason: {row['revoke_reason']}" if row.get("revoke_reason") else ""
        click.echo(
            f"grant   {row['id']:>4}  {row['state']:<8} {row['repo_id']}@{row['version']}"
            f"#{row['tier']}  for {row['grantee']}  until {row['expires_at']}"
            f"  by {decided}{reason}"
        )


@group.command("status")
@gateway_options
def status_command(gateway: str, token: str | None) -> None:
    """List your requests (with any denial reason) and your grants."""
    with api_client(gateway, token) as client:
        echo_requests(call(client, "GET", "/api/access/requests"))
        echo_grants(call(client, "GET", "/api/access/grants"))


@group.command("list")
@click.option("--pending", is_flag=True, help="Only requests waiting for a decision.")
@gateway_options
def list_command(pending: bool, gateway: str, token: str | None) -> None:
    """Publishers: requests and grants on your org's releases."""
    params = {"review": "true", **({"status": "pending"} if pending else {})}
    with api_client(gateway, token) as client:
        echo_requests(call(client, "GET", "/api/access/requests", params=params))
        if not pending:
            echo_grants(call(client, "GET", "/api/access/grants", params={"review": "true"}))


@group.command("approve")
@click.argument("request_id", type=int)
@gateway_options
def approve_command(request_id: int, gateway: str, token: str | None) -> None:
    """Approve pending request REQUEST_ID: a grant is issued."""
    with api_client(gateway, token) as client:
        grant = call(client, "POST", f"/api/access/requests/{request_id}/approve")
    echo_grants([grant])


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
    echo_requests([row])


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
    echo_grants([grant])


@group.command("policy")
@click.argument("release")
@TIER_OPTION
@click.option("--mode", type=click.Choice(["auto", "manual"]), help="Change the approval mode.")
@click.option("--lifetime", type=int, help="Change the grant lifetime (seconds).")
@click.option("--allow", "allow_pairs", multiple=True, help="FIELD=VALUE accepted (repeatable).")
@click.option("--deny", "deny_pairs", multiple=True, help="FIELD=VALUE refused (repeatable).")
@click.option("--max-grants", type=click.IntRange(0), help="Cap on active grants.")
@gateway_options
def policy_command(
    release: str,
    tier: str,
    mode: str | None,
    lifetime: int | None,
    allow_pairs: tuple[str, ...],
    deny_pairs: tuple[str, ...],
    max_grants: int | None,
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
                "grant_lifetime_seconds": lifetime or current["grant_lifetime_seconds"],
                "allow": _lists(allow_pairs) if allow_pairs else current["allow"],
                "deny": _lists(deny_pairs) if deny_pairs else current["deny"],
                "max_grants": max_grants if max_grants is not None else current["max_grants"],
            }
            history = [call(client, "PUT", path, json=body)]
    for row in history:
        policy = {k: v for k, v in row["policy"].items() if k != "fields"}
        click.echo(
            f"v{row['policy_version']}  by {row['created_by'] or 'release statement'}  {policy}"
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
