"""`tiergate admin`: users and API tokens, straight against the database."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from gateway.cli._context import data_dir_option, database_session, load_settings
from gateway.cli._output import DurationType, echo_json, echo_table, json_option, relative_time

ROLE_CHOICE = click.Choice(["admin", "publisher", "developer"])


@click.group(name="admin")
def group() -> None:
    """Users, tokens, OAuth clients and storage upkeep (on the gateway host, on its database)."""


@group.command("create-user")
@click.argument("username")
@click.option("--role", type=ROLE_CHOICE, required=True, help="The user's role.")
@click.option("--org", default=None, help="Org of a publisher (created if new).")
@click.option("--token-name", default="initial", show_default=True)
@click.option("--ttl-days", type=click.IntRange(1, 3650), default=90, show_default=True)
@data_dir_option
def create_user(
    username: str,
    role: str,
    org: str | None,
    token_name: str,
    ttl_days: int,
    data_dir: Path | None,
) -> None:
    """Create USERNAME and print a new API token for them, once.

    \b
    Example:
      tiergate admin create-user alice --role publisher --org acme
    """
    from gateway.db.models import Role
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts

    settings = load_settings(data_dir=data_dir)
    with database_session(settings) as session:
        user = accounts.create_user(session, username, Role(role), org)
        issued = accounts.issue_token(
            session, user, name=token_name, now=utcnow(), ttl_days=ttl_days
        )
    click.echo(f"created {role} {username!r}" + (f" in org {org!r}" if org else ""))
    click.echo("API token (shown once, store it now):")
    click.echo(issued.plaintext)


@group.command("create-token")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for.")
@click.option("--scope", "scopes", multiple=True, help="Limit scopes (repeatable).")
@click.option("--ttl-days", type=click.IntRange(1, 3650), default=90, show_default=True)
@data_dir_option
def create_token(
    username: str, name: str, scopes: tuple[str, ...], ttl_days: int, data_dir: Path | None
) -> None:
    """Create another API token for USERNAME and print it once."""
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts

    settings = load_settings(data_dir=data_dir)
    with database_session(settings) as session:
        user = accounts.get_user(session, username)
        issued = accounts.issue_token(
            session,
            user,
            name=name,
            now=utcnow(),
            scopes=frozenset(scopes) if scopes else None,
            ttl_days=ttl_days,
        )
    click.echo(issued.plaintext)


@group.command("list-users")
@json_option
@data_dir_option
def list_users(as_json: bool, data_dir: Path | None) -> None:
    """List users with their role and org."""
    from gateway.db.models import Org
    from gateway.services import accounts

    settings = load_settings(data_dir=data_dir)
    with database_session(settings) as session:
        rows = []
        for user in accounts.list_users(session):
            org = session.get(Org, user.org_id) if user.org_id is not None else None
            rows.append(
                {
                    "id": user.id,
                    "username": user.username,
                    "role": str(user.role),
                    "org": org.name if org else None,
                    "disabled": bool(user.disabled),
                }
            )
    if as_json:
        echo_json(rows)
        return
    echo_table(
        ["ID", "USER", "ROLE", "ORG", "STATE"],
        [
            [r["id"], r["username"], r["role"], r["org"], "disabled" if r["disabled"] else "active"]
            for r in rows
        ],
        empty="no users",
    )


@group.command("list-tokens")
@click.argument("username")
@json_option
@data_dir_option
def list_tokens(username: str, as_json: bool, data_dir: Path | None) -> None:
    """List USERNAME's tokens (id, prefix, name, state); never the tokens themselves."""
    from gateway.db.timeutil import as_utc, utcnow
    from gateway.services import accounts

    settings = load_settings(data_dir=data_dir)
    now = utcnow()
    with database_session(settings) as session:
        user = accounts.get_user(session, username)
        assert user.id is not None
        rows: list[dict[str, Any]] = []
        for token in accounts.list_tokens(session, user.id):
            if token.revoked_at is not None:
                state = "revoked"
            elif token.expires_at is not None and as_utc(token.expires_at) <= now:
                state = "expired"
            else:
                state = "active"
            expires = as_utc(token.expires_at).isoformat() if token.expires_at else None
            rows.append(
                {
                    "id": token.id,
                    "prefix": token.prefix,
                    "name": token.name,
                    "state": state,
                    "scopes": token.scopes.split(),
                    "expires_at": expires,
                }
            )
    if as_json:
        echo_json(rows)
        return
    echo_table(
        ["ID", "PREFIX", "STATE", "EXPIRES", "NAME", "SCOPES"],
        [
            [
                r["id"],
                f"{r['prefix']}…",
                r["state"],
                relative_time(r["expires_at"]),
                r["name"],
                " ".join(r["scopes"]) or "(all of the role's)",
            ]
            for r in rows
        ],
        empty=f"{username} has no tokens",
    )


@group.command("revoke-token")
@click.argument("token_ref")
@data_dir_option
def revoke_token(token_ref: str, data_dir: Path | None) -> None:
    """Revoke a token by id, by its display prefix, or by the token itself."""
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts

    settings = load_settings(data_dir=data_dir)
    with database_session(settings) as session:
        token_id = accounts.find_token_id(session, token_ref)
        token = accounts.revoke_token(session, token_id, now=utcnow())
    click.echo(f"revoked token {token.id} ({token.prefix}…, {token.name})")


@group.command("create-client")
@click.option("--user", "username", required=True, help="The account the client acts for.")
@click.option("--name", default="service", show_default=True, help="What the client is for.")
@click.option("--scope", "scopes", multiple=True, help="Limit scopes (repeatable).")
@data_dir_option
def create_client(username: str, name: str, scopes: tuple[str, ...], data_dir: Path | None) -> None:
    """Register an OAuth2 client (client credentials) for USER; prints its id and secret once.

    \b
    Example:
      tiergate admin create-client --user ci-bot --scope read --scope access
      curl -u CLIENT_ID:SECRET -d grant_type=client_credentials GATEWAY/oauth/token
    """
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts, oauth

    settings = load_settings(data_dir=data_dir)
    with database_session(settings) as session:
        user = accounts.get_user(session, username)
        issued = oauth.create_client(
            session,
            user,
            name=name,
            scopes=frozenset(scopes) if scopes else None,
            now=utcnow(),
        )
    click.echo(f"client for {username!r} with scopes [{issued.client.scopes}]", err=True)
    click.echo("client id and secret (the secret is shown once, store it now):", err=True)
    click.echo(f"client_id={issued.client.client_id}")
    click.echo(f"client_secret={issued.secret}")


@group.command("set-password")
@click.argument("username")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
@data_dir_option
def set_password(username: str, from_stdin: bool, data_dir: Path | None) -> None:
    """Set USERNAME's web sign-in password (prompted twice, never echoed).

    \b
    Example:
      tiergate admin set-password alice
      printf '%s\\n' "$PASSWORD" | tiergate admin set-password alice --stdin
    """
    from gateway.auth.passwords import check_password_quality
    from gateway.db.timeutil import utcnow
    from gateway.ledger.events import Actor
    from gateway.services.passwords import set_password as store_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True)
    check_password_quality(password)
    settings = load_settings(data_dir=data_dir)
    with database_session(settings) as session:
        # The host operator acts here, with no account: the log says so.
        store_password(session, username, password, actor=Actor(kind="operator"), now=utcnow())
    click.echo(f"password set for {username!r}")


@group.command("gc")
@click.option(
    "--pending-older-than",
    type=DurationType(),
    default="7d",
    show_default=True,
    help="Discard releases still pending (never published) after this long.",
)
@click.option(
    "--blob-grace",
    type=DurationType(),
    default="1d",
    show_default=True,
    help="Keep unreferenced blobs younger than this (a publish may be about to use them).",
)
@click.option(
    "--uploads-older-than",
    type=DurationType(),
    default="2d",
    show_default=True,
    help="Abort resumable uploads that received nothing for this long.",
)
@click.option("--apply", is_flag=True, help="Remove what is found (default: only report it).")
@data_dir_option
def gc(
    pending_older_than: timedelta,
    blob_grace: timedelta,
    uploads_older_than: timedelta,
    apply: bool,
    data_dir: Path | None,
) -> None:
    """Reclaim what abandoned publishes leave behind (a dry run unless --apply).

    Pending releases nobody published, blobs no release refers to any more, and upload
    sessions that went quiet. Each removal is its own transaction and is re-checked as it
    happens, so it is safe while the gateway serves; a discarded release is logged as
    `release.discarded`. On S3, also set a lifecycle rule that aborts incomplete multipart
    uploads (the store's own staging objects).

    \b
    Examples:
      tiergate admin gc                        # what would go
      tiergate admin gc --apply
      tiergate admin gc --pending-older-than 30d --blob-grace 6h --apply
    """
    from gateway.db.engine import make_engine
    from gateway.db.migrate import upgrade
    from gateway.db.timeutil import utcnow
    from gateway.services.gc import GcCutoffs, collect_garbage
    from gateway.storage.factory import make_blob_store

    settings = load_settings(data_dir=data_dir)
    now = utcnow()
    cutoffs = GcCutoffs(
        pending_before=now - pending_older_than,
        blobs_before=now - blob_grace,
        uploads_before=now - uploads_older_than,
    )
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        report = collect_garbage(
            engine,
            make_blob_store(settings),
            cutoffs,
            now=now,
            apply=apply,
            on_step=click.echo,
        )
    finally:
        engine.dispose()
    verb = "removed" if apply else "would remove"
    if not apply:
        for ref in report.releases:
            click.echo(f"pending release {ref}")
        for blob in report.blobs:
            click.echo(f"blob {blob.sha256} ({blob.size:,} bytes)")
        for upload_id in report.uploads:
            click.echo(f"upload {upload_id}")
        for name in report.leftovers:
            click.echo(f"leftover {name}")
    for line in report.skipped:
        click.echo(f"kept {line}")
    click.echo(
        f"{verb}: {len(report.releases)} pending release(s), {len(report.blobs)} blob(s) "
        f"({report.blob_bytes:,} bytes), {len(report.uploads)} upload session(s), "
        f"{len(report.leftovers)} leftover(s)"
        + ("" if apply else "; run again with --apply to remove them")
    )
