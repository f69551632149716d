"""Fixtures for multi-process tests: one PostgreSQL database, accounts, replicas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import Account, _truncate_all

MakeAccount = Callable[..., Account]


@pytest.fixture
def scale_db_url(pg_database_url: str) -> str:
    """The session's PostgreSQL database, emptied: replicas only scale on a shared server."""
    _truncate_all(pg_database_url)
    return pg_database_url


@pytest.fixture
def scale_engine(scale_db_url: str) -> Iterator[Engine]:
    from gateway.db.engine import make_engine

    engine = make_engine(scale_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The data dir every replica shares (keys, and local blobs when not on S3)."""
    path = tmp_path / "shared"
    path.mkdir()
    return path


def make_account_in(engine: Engine) -> MakeAccount:
    """Create users with a fresh API token straight in the database behind ``engine``."""
    from gateway.db.engine import session_scope
    from gateway.db.models import Role
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts

    def make(username: str, role: str = "developer", org: str | None = None) -> Account:
        with session_scope(engine) as session:
            user = accounts.create_user(session, username, Role(role), org)
            issued = accounts.issue_token(session, user, name="scale", now=utcnow())
        return Account(username, role, org, issued.plaintext)

    return make


@pytest.fixture
def make_scale_account(scale_engine: Engine) -> MakeAccount:
    return make_account_in(scale_engine)


def blob_holder(blobs: object) -> object:
    """What `publish_test_release` expects of an app: ``.state.gateway.blobs``."""
    return SimpleNamespace(state=SimpleNamespace(gateway=SimpleNamespace(blobs=blobs)))
