"""Issue #14 item 5: a minted token never outlives, out-scopes or survives its parent credential."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.db.engine import session_scope
from gateway.db.models import ApiToken
from gateway.db.timeutil import utcnow
from gateway.deps import get_now
from gateway.services import token_lineage
from tests.conftest import Account
from tests.gateway.test_health_and_errors import assert_problem
from tests.gateway.test_oauth import fetch_token, make_client

MakeAccount = Callable[..., Account]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mint(client: TestClient, token: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/tokens", json={"name": "minted", **body}, headers=bearer(token))
    assert response.status_code == 201, response.text
    minted: dict[str, Any] = response.json()
    return minted


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def oauth_token(client: TestClient, owner: Account, **form: str) -> dict[str, Any]:
    creds = make_client(client, owner, scopes=["read", "access"])
    issued = fetch_token(client, creds, **form)
    assert issued.status_code == 200, issued.text
    body: dict[str, Any] = issued.json()
    return {**body, **creds}


def test_ten_minute_oauth_token_cannot_mint_a_ten_year_token(
    app: FastAPI, client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    start = utcnow()
    app.dependency_overrides[get_now] = at(start)
    access = oauth_token(client, dev)
    child = mint(client, access["access_token"], ttl_days=3650)
    expires = datetime.fromisoformat(child["expires_at"])
    assert expires <= start + timedelta(seconds=access["expires_in"])
    assert client.get("/api/whoami", headers=bearer(child["token"])).status_code == 200

    # One second after the access token died, what it minted is dead too.
    app.dependency_overrides[get_now] = at(start + timedelta(seconds=access["expires_in"] + 1))
    assert_problem(client.get("/api/whoami", headers=bearer(child["token"])), 401, "token_expired")


def test_one_day_token_cannot_mint_a_ten_year_token(
    app: FastAPI, client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev", ttl_days=1)
    start = utcnow()
    app.dependency_overrides[get_now] = at(start)
    child = mint(client, dev.token, ttl_days=3650)
    assert datetime.fromisoformat(child["expires_at"]) <= start + timedelta(days=1, seconds=5)
    # Never expiring is "as long as the parent", not forever.
    forever = mint(client, dev.token, ttl_days=None)
    assert forever["expires_at"] is not None
    app.dependency_overrides[get_now] = at(start + timedelta(days=2))
    for token in (child["token"], forever["token"]):
        assert_problem(client.get("/api/whoami", headers=bearer(token)), 401, "token_expired")


def test_token_minted_through_a_revoked_client_stops_working(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    access = oauth_token(client, dev)
    child = mint(client, access["access_token"])
    grandchild = mint(client, child["token"])
    assert client.get("/api/whoami", headers=bearer(grandchild["token"])).status_code == 200

    revoked = client.delete(f"/api/clients/{access['client_id']}", headers=dev.headers)
    assert revoked.status_code == 200, revoked.text
    for token in (child["token"], grandchild["token"]):
        assert_problem(client.get("/api/whoami", headers=bearer(token)), 401, "token_revoked")
    listed = {t["id"]: t for t in client.get("/api/tokens", headers=dev.headers).json()}
    assert listed[child["id"]]["revoked_at"] is not None  # cascaded, not only refused
    assert listed[grandchild["id"]]["revoked_at"] is not None


def test_token_minted_by_a_revoked_access_token_stops_working(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    access = oauth_token(client, dev)
    child = mint(client, access["access_token"])
    revoked = client.post(
        "/oauth/revoke",
        data={"token": access["access_token"]},
        auth=(access["client_id"], access["client_secret"]),
    )
    assert revoked.status_code == 200, revoked.text
    assert_problem(client.get("/api/whoami", headers=bearer(child["token"])), 401, "token_revoked")


def test_revoking_a_token_revokes_every_token_it_minted(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    parent = mint(client, dev.token, name="parent")
    child = mint(client, parent["token"])
    grandchild = mint(client, child["token"])
    sibling = mint(client, dev.token, name="unrelated")

    response = client.delete(f"/api/tokens/{parent['id']}", headers=dev.headers)
    assert response.status_code == 200, response.text
    for token in (parent["token"], child["token"], grandchild["token"]):
        assert_problem(client.get("/api/whoami", headers=bearer(token)), 401, "token_revoked")
    assert client.get("/api/whoami", headers=bearer(sibling["token"])).status_code == 200
    assert client.get("/api/whoami", headers=dev.headers).status_code == 200


def test_parent_revoked_without_cascade_still_kills_the_chain(
    client: TestClient, engine: Engine, make_account: MakeAccount
) -> None:
    """The check at authentication holds even if a revocation skipped the cascade."""
    dev = make_account("dev")
    parent = mint(client, dev.token, name="parent")
    grandchild = mint(client, mint(client, parent["token"])["token"])
    with session_scope(engine) as session:
        row = session.get(ApiToken, parent["id"])
        assert row is not None
        row.revoked_at = utcnow()
        session.add(row)
    assert_problem(
        client.get("/api/whoami", headers=bearer(grandchild["token"])), 401, "token_revoked"
    )


def test_minted_token_never_out_scopes_its_parent(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev", scopes=frozenset({"read"}))
    child = mint(client, dev.token)
    assert child["scopes"] == ["read"]
    response = client.post(
        "/api/tokens", json={"name": "x", "scopes": ["read", "generate"]}, headers=dev.headers
    )
    assert_problem(response, 403, "insufficient_scope")
    access = oauth_token(client, make_account("svc-owner"), scope="read")
    assert mint(client, access["access_token"])["scopes"] == ["read"]


def test_empty_scopes_are_refused_on_every_path_with_one_code(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    response = client.post("/api/tokens", json={"name": "x", "scopes": []}, headers=dev.headers)
    assert_problem(response, 422, "scopes_empty")
    response = client.post("/api/clients", json={"name": "x", "scopes": []}, headers=dev.headers)
    assert_problem(response, 422, "scopes_empty")
    access = oauth_token(client, dev)
    response = client.post(
        "/api/tokens", json={"name": "x", "scopes": []}, headers=bearer(access["access_token"])
    )
    assert_problem(response, 422, "scopes_empty")
    # The token endpoint speaks RFC 6749: an explicit empty scope is invalid_scope there.
    creds = make_client(client, dev, scopes=["read"])
    refused = fetch_token(client, creds, scope="")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_scope"


def test_minting_depth_is_bounded(client: TestClient, make_account: MakeAccount) -> None:
    token = make_account("dev").token
    for _ in range(token_lineage.MAX_DEPTH - 1):
        token = mint(client, token)["token"]
    response = client.post("/api/tokens", json={"name": "deep"}, headers=bearer(token))
    assert_problem(response, 422, "validation_error")


def test_one_day_token_cannot_register_a_client_that_outlives_it(
    app: FastAPI, client: TestClient, make_account: MakeAccount
) -> None:
    """Otherwise a stolen short-lived token buys a permanent client, which mints forever."""
    dev = make_account("dev", ttl_days=1)
    start = utcnow()
    app.dependency_overrides[get_now] = at(start)
    creds = make_client(client, dev, scopes=["read"])
    assert fetch_token(client, creds).status_code == 200
    app.dependency_overrides[get_now] = at(start + timedelta(days=2))
    refused = fetch_token(client, creds)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_client"


def test_revoking_the_registering_token_kills_its_clients_and_what_they_minted(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    registrar = mint(client, dev.token, name="registrar")
    creds = make_client(client, Account("dev", "developer", None, registrar["token"]))
    access = fetch_token(client, creds).json()["access_token"]
    child = mint(client, access)
    assert client.get("/api/whoami", headers=bearer(child["token"])).status_code == 200

    revoked = client.delete(f"/api/tokens/{registrar['id']}", headers=dev.headers)
    assert revoked.status_code == 200, revoked.text
    assert fetch_token(client, creds).status_code == 401
    assert_problem(client.get("/api/whoami", headers=bearer(access)), 401, "token_invalid")
    assert_problem(client.get("/api/whoami", headers=bearer(child["token"])), 401, "token_revoked")
    listed = client.get("/api/clients", headers=dev.headers).json()
    assert [c["revoked_at"] is not None for c in listed] == [True]
