"""`tiergate db`: schema migrations."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli._context import data_dir_option, load_settings


@click.group(name="db")
def group() -> None:
    """Database schema management (SQLite by default, PostgreSQL via TIERGATE_DATABASE_URL)."""


@group.command()
@data_dir_option
def upgrade(data_dir: Path | None) -> None:
    """Apply all pending migrations (`tiergate serve` does this on start too)."""
    from gateway.db.engine import make_engine
    from gateway.db.migrate import current_revision
    from gateway.db.migrate import upgrade as run_upgrade

    settings = load_settings(data_dir=data_dir)
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        before = current_revision(engine)
        run_upgrade(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"database already at {after}")
    else:
        click.echo(f"database upgraded: {before or '(empty)'} -> {after}")


@group.command()
@data_dir_option
def current(data_dir: Path | None) -> None:
    """Print the schema revision the database is at, and the newest one available."""
    from gateway.db.engine import make_engine
    from gateway.db.migrate import current_revision, head_revision

    settings = load_settings(data_dir=data_dir)
    engine = make_engine(settings.resolved_database_url)
    try:
        click.echo(f"current: {current_revision(engine) or '(empty)'}")
        click.echo(f"head:    {head_revision()}")
    finally:
        engine.dispose()
