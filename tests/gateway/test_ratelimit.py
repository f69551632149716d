"""Rate limits on token issuance and attestation submission, shared through the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.config import Settings
from gateway.db.engine import make_engine
from gateway.db.timeutil import utcnow
from gateway.services import ratelimit
from tests.conftest import Account
from tests.gateway.test_health_and_errors import assert_problem

MakeAccount = Callable[..., Account]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_level="warning",
        rate_limit_window_seconds=3600,
        rate_limit_tokens_per_account=2,
        rate_limit_attestations_per_account=2,
    )


def test_token_issuance_is_limited_per_account(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    for _ in range(2):
        assert (
            client.post("/api/tokens", json={"name": "x"}, headers=dev.headers).status_code == 201
        )
    limited = client.post("/api/tokens", json={"name": "x"}, headers=dev.headers)
    body = assert_problem(limited, 429, "rate_limited")
    assert 0 < int(limited.headers["retry-after"]) <= 3600
    assert body["retry_after"] == int(limited.headers["retry-after"])
    # Another account is not affected.
    other = make_account("other")
    assert client.post("/api/tokens", json={"name": "x"}, headers=other.headers).status_code == 201

    created = client.post("/api/clients", json={"name": "svc"}, headers=other.headers).json()
    auth = (created["client_id"], "tgs_wrong-secret")
    # Failed attempts count too: guessing secrets is what the limit is for.
    for _ in range(2):
        response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
        assert response.status_code == 401
    limited = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert_problem(limited, 429, "rate_limited")
    assert "retry-after" in limited.headers


def test_attestation_submission_is_limited(client: TestClient, make_account: MakeAccount) -> None:
    dev = make_account("dev")
    body = {"repo_id": "acme/none", "version": "1", "attestation": "{}"}
    for _ in range(2):
        response = client.post("/api/access/requests", json=body, headers=dev.headers)
        assert response.status_code == 404
    limited = client.post("/api/access/requests", json=body, headers=dev.headers)
    assert_problem(limited, 429, "rate_limited")


def test_counters_are_shared_across_engines_and_windows_reset(
    settings: Settings, engine: Engine
) -> None:
    second = make_engine(settings.resolved_database_url)  # another gateway process, in effect
    try:
        now = utcnow()
        limit = [ratelimit.Limit(ratelimit.bucket_key("t", "shared"), 3, 60)]
        ratelimit.hit(engine, limit, now=now)
        ratelimit.hit(second, limit, now=now)
        ratelimit.hit(engine, limit, now=now)
        with pytest.raises(ratelimit.RateLimited) as caught:
            ratelimit.hit(second, limit, now=now)
        assert 1 <= int(caught.value.headers["Retry-After"]) <= 60
        ratelimit.hit(second, limit, now=now + timedelta(seconds=61))
    finally:
        second.dispose()
