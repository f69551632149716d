"""Shared CLI plumbing: settings from the environment (entry points only) and a DB session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlmodel import Session

from gateway.config import Settings


def load_settings(**overrides: Any) -> Settings:
    """Settings from `TIERGATE_*` variables, with explicit CLI options taking precedence."""
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: $TIERGATE_DATA_DIR or ./data).",
)


def require_existing_database(settings: Settings) -> None:
    """Refuse to create a new SQLite database by accident.

    An admin command run with another data dir than the server's used to create a fresh
    database there, and the token it printed was refused by the running gateway. Commands
    that manage an existing gateway say where they looked instead; `tiergate db upgrade` (or
    `tiergate serve`) is how a database is created on purpose.
    """
    from sqlalchemy.engine import make_url

    from gateway.errors import ConfigurationError

    url = make_url(settings.resolved_database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database)
    if not path.exists():
        where = (
            "TIERGATE_DATABASE_URL"
            if settings.database_url is not None
            else f"data dir {settings.data_dir} (--data-dir or TIERGATE_DATA_DIR)"
        )
        raise ConfigurationError(
            f"no gateway database at {path} (from the {where}); point at the data dir the "
            "gateway runs with, or create a new database there with `tiergate db upgrade`"
        )


@contextmanager
def database_session(settings: Settings) -> Iterator[Session]:
    """The existing gateway database, migrated, and a session committed on success."""
    from gateway.db.engine import make_engine, session_scope
    from gateway.db.migrate import upgrade

    require_existing_database(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()
