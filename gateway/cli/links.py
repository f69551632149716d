"""`tiergate access link`: issue an expiring download link for one file of a tier.

A command for the `access` group to attach (``group.add_command(command)``).
"""

from __future__ import annotations

import click

from gateway.cli._client import api_client, call, gateway_options, parse_release_ref

__all__ = ["command"]


@click.command(name="link")
@click.argument("ref", metavar="ORG/NAME[@VERSION]")
@click.option("--tier", default="optimized", show_default=True)
@click.option("--file", "path", required=True, help="Path of the file inside the tier.")
@click.option(
    "--ttl",
    "ttl_seconds",
    type=click.IntRange(min=1),
    default=None,
    help="Lifetime in seconds (capped by your grant and the gateway maximum).",
)
@click.option("--bind-network", is_flag=True, help="Accept the link only from this network.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@gateway_options
def command(
    ref: str,
    tier: str,
    path: str,
    ttl_seconds: int | None,
    bind_network: bool,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Print a link that downloads one file (GET/HEAD, Range) until it expires."""
    repo_id, version = parse_release_ref(ref)
    body = {"repo_id": repo_id, "version": version, "tier": tier, "path": path,
            "ttl_seconds": ttl_seconds, "bind_network": bind_network}  # fmt: skip
    with api_client(gateway, token) as http:
        link = call(http, "POST", "/api/links", what="issuing the link", json=body)
    if as_json:
        import json

        click.echo(json.dumps(link, indent=2))
        return
    click.echo(link["url"])
    click.echo(
        f"expires {link['expires_at']}, serves at most {link['byte_budget']} bytes", err=True
    )
