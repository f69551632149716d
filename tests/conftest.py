"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable), apps, live servers."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

PG_ADMIN_URL = os.environ.get(
    "TIERGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


PG_AVAILABLE = _pg_reachable()
# CI starts PostgreSQL and sets this, so a missing server fails CI instead of skipping.
PG_REQUIRED = os.environ.get("TIERGATE_REQUIRE_POSTGRES") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, migrated once."""
    if not PG_AVAILABLE:
        if PG_REQUIRED:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required but unreachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    name = f"tiergate_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from gateway.db.engine import make_engine
    from gateway.db.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    _SEED_ROWS[url] = _snapshot(url)
    yield url
    with admin.connect() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file copied for each test (faster than migrating every time)."""
    from gateway.db.engine import make_engine
    from gateway.db.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


# Rows the migrations themselves insert (e.g. the log_state row), restored after each TRUNCATE.
_SEED_ROWS: dict[str, dict[str, list[dict[str, object]]]] = {}


def _tables() -> list[sa.Table]:
    from sqlmodel import SQLModel

    import gateway.db.models  # noqa: F401

    return list(SQLModel.metadata.sorted_tables)


def _snapshot(url: str) -> dict[str, list[dict[str, object]]]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        seed = {
            table.name: [dict(row._mapping) for row in connection.execute(sa.select(table))]
            for table in _tables()
        }
    engine.dispose()
    return {name: rows for name, rows in seed.items() if rows}


def _truncate_all(url: str) -> None:
    tables = _tables()
    engine = sa.create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in tables)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        for table in tables:
            rows = _SEED_ROWS.get(url, {}).get(table.name)
            if rows:
                connection.execute(sa.insert(table), rows)
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "tiergate.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database_url")
    _truncate_all(url)
    return url


# The tests' gateways share one watermark master key, so a statistical assertion over seeded
# generations is a fixed outcome rather than a draw that fails now and then (a production
# gateway generates a random key on first start; see gateway/keyring.py).
TEST_WATERMARK_MASTER_KEY = bytes(range(32))


def write_test_watermark_key(keys_dir: Path) -> None:
    from gateway.keyring import WATERMARK_KEY_FILE

    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(keys_dir / WATERMARK_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(TEST_WATERMARK_MASTER_KEY)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> object:
    from gateway.config import Settings

    made = Settings(data_dir=tmp_path / "data", database_url=database_url, log_level="warning")
    write_test_watermark_key(made.resolved_keys_dir)
    return made


@pytest.fixture
def engine(settings: object) -> Iterator[Engine]:
    from gateway.config import Settings
    from gateway.db.engine import make_engine

    assert isinstance(settings, Settings)
    eng = make_engine(settings.resolved_database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def app(settings: object, engine: Engine) -> object:
    from gateway.app import create_app
    from gateway.config import Settings

    assert isinstance(settings, Settings)
    return create_app(settings, engine=engine)


@pytest.fixture
def client(app: object) -> Iterator[object]:
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as test_client:  # type: ignore[arg-type]
        yield test_client


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    org: str | None
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_account(engine: Engine) -> Callable[..., Account]:
    """Create a user with a fresh token straight in the database."""
    from gateway.db.engine import session_scope
    from gateway.db.models import Role
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts

    def make(
        username: str, role: str = "developer", org: str | None = None, **kw: object
    ) -> Account:
        with session_scope(engine) as session:
            user = accounts.create_user(session, username, Role(role), org)
            issued = accounts.issue_token(session, user, name="test", now=utcnow(), **kw)  # type: ignore[arg-type]
        return Account(username, role, org, issued.plaintext)

    return make


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a background thread."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def live_server(app: object) -> Iterator[LiveServer]:
    server = LiveServer(app)
    server.start()
    yield server
    server.stop()
