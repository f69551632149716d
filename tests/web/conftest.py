"""Fixtures for the web interface: accounts with passwords and signed-in test clients."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import Account

PASSWORD = "correct horse battery"


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only for page tests: the services below are tested on both databases by their
    owners, and pages add no SQL of their own beyond sessions (see test_sessions.py)."""
    target = tmp_path / "tiergate.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def set_password(engine: Engine, username: str, password: str = PASSWORD) -> None:
    from gateway.auth.passwords import ScryptParams, hash_password
    from gateway.db.engine import session_scope
    from gateway.services import accounts

    with session_scope(engine) as session:
        user = accounts.get_user(session, username)
        # Cheap parameters keep the suite fast; production uses the defaults.
        user.password_hash = hash_password(password, ScryptParams(n=1 << 10, r=8, p=1))
        session.add(user)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def web_account(make_account: Callable[..., Account], engine: Engine) -> Callable[..., Account]:
    """Like ``make_account``, plus a password for the web sign-in."""

    def make(username: str, role: str = "developer", org: str | None = None) -> Account:
        account = make_account(username, role, org)
        set_password(engine, username)
        return account

    return make


@pytest.fixture
def browser_client(app: object, client: TestClient) -> Callable[[], TestClient]:
    """Independent cookie jars on the same app: one per person in a test.

    Only ``client`` runs the app's lifespan; more lifespans would start more ledger loops
    competing for the one SQLite file.
    """

    def make() -> TestClient:
        return TestClient(app, raise_server_exceptions=False)  # type: ignore[arg-type]

    return make
