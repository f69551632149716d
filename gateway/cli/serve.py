"""`tiergate serve`: run the gateway on the embedded default or a configured database."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from gateway.cli._context import data_dir_option, load_settings

log = logging.getLogger("tiergate.serve")


@click.command(name="serve")
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@data_dir_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
def command(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    log_format: str | None,
    workers: int,
) -> None:
    """Start the gateway HTTP server.

    With no configuration it keeps everything under ./data: a SQLite database, local blob
    storage and the gateway's keys (generated on first start). On a fresh data dir it
    creates an `admin` user and prints its API token once.
    """
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging

    settings = load_settings(host=host, port=port, data_dir=data_dir, log_format=log_format)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    state = app.state.gateway
    bootstrap = _bootstrap_admin(state)
    url = settings.base_url
    click.echo(f"tiergate {app.version} serving at {url}  (data: {settings.data_dir.resolve()})")
    if bootstrap:
        click.echo("First start: created user 'admin'. Its API token (shown once, store it now):")
        click.echo(f"  {bootstrap}")
    click.echo(f"Try: curl -H 'Authorization: Bearer <token>' {url}/api/whoami")
    click.echo("More users: tiergate admin create-user NAME --role developer")
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        uvicorn.run(app, **common)  # type: ignore[arg-type]
        return
    # Several worker processes each build their own app from the same settings, passed to
    # them through the environment (the entry point is where settings are read).
    for key, value in _settings_env(settings).items():
        os.environ[key] = value
    uvicorn.run(
        "gateway.cli.serve:app_from_environment",
        factory=True,
        workers=workers,
        **common,  # type: ignore[arg-type]
    )


def _settings_env(settings: object) -> dict[str, str]:
    from gateway.config import Settings

    assert isinstance(settings, Settings)
    out = {
        "TIERGATE_DATA_DIR": str(settings.data_dir),
        "TIERGATE_HOST": settings.host,
        "TIERGATE_PORT": str(settings.port),
        "TIERGATE_LOG_FORMAT": settings.log_format,
    }
    if settings.database_url:
        out["TIERGATE_DATABASE_URL"] = settings.database_url
    return out


def app_from_environment() -> object:
    """uvicorn factory for `--workers N`: each worker process reads the settings itself."""
    from gateway.app import create_app
    from gateway.config import Settings
    from gateway.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def _bootstrap_admin(state: object) -> str | None:
    """Create the first admin on an empty database; None when users exist or DB is down."""
    from gateway.app import try_migrate
    from gateway.db.timeutil import utcnow
    from gateway.services.bootstrap import bootstrap_admin
    from gateway.state import GatewayState

    assert isinstance(state, GatewayState)
    if not try_migrate(state):
        click.echo("warning: database unreachable; serving 503s until it answers", err=True)
        return None
    return bootstrap_admin(state.engine, now=utcnow())
