"""Issue #14 item 7: every time in an API response is timezone-aware UTC, SQLite included.

SQLite hands back naive datetimes; they used to reach responses as ``2026-12-02T13:00:00``,
which clients read as local time. The column type now attaches UTC on every read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.db.models import ApiToken
from tests.conftest import Account
from tests.gateway.download_fixtures import grant_access
from tests.gateway.release_fixtures import publish_test_release

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def times(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every ``*_at`` field (and ``created``-like time) anywhere in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and (key.endswith("_at") or key == "lastModified"):
                yield f"{where}.{key}", item
            else:
                yield from times(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from times(item, f"{where}[{index}]")


def test_every_time_in_api_responses_is_utc(
    app: FastAPI,
    client: TestClient,
    engine: Engine,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    admin = make_account("root", "admin")
    pat = make_account("pat", "publisher", org="acme")
    dev = make_account("dev")
    publish_test_release(app, engine, pat, tmp_path)
    grant_access(engine, "dev", "acme/tiny", "1.0.0")
    assert client.post("/api/clients", json={"name": "svc"}, headers=dev.headers).is_success
    link = client.post(
        "/api/links",
        json={"repo_id": "acme/tiny", "tier": "optimized", "path": "model.safetensors"},
        headers=dev.headers,
    )
    assert link.status_code == 201, link.text
    grants = client.get("/api/access/grants", headers=dev.headers).json()
    minted = client.post("/api/tokens", json={"name": "t", "ttl_days": 1}, headers=dev.headers)

    documents = {
        "link": link.json(),
        "minted token": minted.json(),
        "tokens": client.get("/api/tokens", headers=dev.headers).json(),
        "clients": client.get("/api/clients", headers=dev.headers).json(),
        "grants": grants,
        "grant": client.get(f"/api/access/grants/{grants[0]['id']}", headers=dev.headers).json(),
        "requests": client.get("/api/access/requests", headers=dev.headers).json(),
        "releases": client.get("/api/releases", headers=dev.headers).json(),
        "release": client.get("/api/releases/acme/tiny/1.0.0", headers=dev.headers).json(),
        "keys": client.get("/api/keys", headers=pat.headers).json(),
        "users": client.get("/api/admin/users", headers=admin.headers).json(),
        "hub model": client.get("/api/models/acme/tiny").json(),
    }
    seen = 0
    for name, document in documents.items():
        for where, text in times(document):
            seen += 1
            assert text.endswith(("Z", "+00:00")), f"{name}{where} = {text!r} is not UTC"
            assert datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    assert seen >= 20


def test_times_read_back_from_sqlite_are_aware(
    engine: Engine, make_account: Callable[..., Account]
) -> None:
    make_account("dev")
    with Session(engine) as session:
        token = session.get(ApiToken, 1)
        assert token is not None
        assert token.created_at.tzinfo is not None
        assert token.created_at.utcoffset() == UTC.utcoffset(None)
