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


@contextmanager
def database_session(settings: Settings) -> Iterator[Session]:
    """A migrated database and a session committed on success."""
    from gateway.db.engine import make_engine, session_scope
    from gateway.db.migrate import upgrade

    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()
