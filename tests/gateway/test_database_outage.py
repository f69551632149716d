"""A database that is down at start or goes away mid-request: 503 problem+json, then recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from gateway.db.engine import make_engine, session_scope
from gateway.db.models import Role
from gateway.db.timeutil import utcnow
from gateway.services import accounts
from tests.conftest import _truncate_all, free_port
from tests.gateway.tcp_proxy import TcpProxy
from tests.gateway.test_health_and_errors import assert_problem

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied_url(pg_database_url: str) -> Iterator[tuple[str, TcpProxy]]:
    _truncate_all(pg_database_url)
    port = free_port()
    proxy = TcpProxy(port, ("127.0.0.1", 5432))
    head, name = pg_database_url.rsplit("/", 1)
    yield f"{head.rsplit(':', 1)[0]}:{port}/{name}", proxy
    proxy.stop()


def _wait_ready(client: TestClient, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError("gateway did not become ready")


def _token(url: str) -> str:
    engine = make_engine(url)
    with session_scope(engine) as session:
        user = accounts.create_user(session, "uma", Role.developer)
        token = accounts.issue_token(session, user, name="t", now=utcnow()).plaintext
    engine.dispose()
    return token


def test_database_down_at_start_then_recovers(
    tmp_path: Path, proxied_url: tuple[str, TcpProxy]
) -> None:
    url, proxy = proxied_url
    settings = Settings(data_dir=tmp_path, database_url=url, db_retry_seconds=0.2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        assert_problem(client.get("/readyz"), 503, "not_ready")
        response = client.get("/api/whoami", headers={"Authorization": "Bearer tg_" + "a" * 43})
        assert_problem(response, 503, "database_unavailable")
        assert response.headers["retry-after"]
        proxy.start()
        _wait_ready(client)
        token = _token(url)
        me = client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200


def test_database_goes_away_mid_flight_then_recovers(
    tmp_path: Path, proxied_url: tuple[str, TcpProxy]
) -> None:
    url, proxy = proxied_url
    proxy.start()
    settings = Settings(data_dir=tmp_path, database_url=url, db_retry_seconds=0.2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        _wait_ready(client)
        headers = {"Authorization": f"Bearer {_token(url)}"}
        assert client.get("/api/whoami", headers=headers).status_code == 200
        proxy.stop()
        assert_problem(client.get("/api/whoami", headers=headers), 503, "database_unavailable")
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        proxy.start()
        deadline = time.monotonic() + 15
        while client.get("/api/whoami", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "gateway did not recover"
            time.sleep(0.1)
