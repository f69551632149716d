"""API tokens: authentication, scopes, ownership and the bad inputs around them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.db.models import ApiToken
from gateway.db.timeutil import utcnow
from gateway.services.accounts import find_token_id
from tests.conftest import Account, LiveServer
from tests.gateway.test_health_and_errors import assert_problem

MakeAccount = Callable[..., Account]


def test_whoami_with_a_valid_token(client: TestClient, make_account: MakeAccount) -> None:
    alice = make_account("alice", "publisher", org="acme")
    body = client.get("/api/whoami", headers=alice.headers).json()
    assert body["username"] == "alice"
    assert body["role"] == "publisher"
    assert body["org"] == "acme"
    assert "publish" in body["scopes"]
    assert "admin" not in body["scopes"]


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "unauthenticated"),
        ("Bearer", "unauthenticated"),
        ("Basic dXNlcjpwYXNz", "unauthenticated"),
        ("Bearer not-a-tiergate-token", "unauthenticated"),
        ("Bearer tg_" + "A" * 43, "unauthenticated"),
        ("Bearer tg_" + "A" * 500, "unauthenticated"),
        ("Bearer tg_\u00e9\u00e9\u00e9", "unauthenticated"),
    ],
)
def test_missing_or_garbage_tokens_are_401(
    client: TestClient, header: str | None, code: str
) -> None:
    headers = {"Authorization": header.encode("utf-8")} if header else {}
    response = client.get("/api/whoami", headers=headers)
    assert_problem(response, 401, code)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_expired_token_is_401_token_expired(
    client: TestClient, make_account: MakeAccount, engine: Engine
) -> None:
    bob = make_account("bob")
    with Session(engine) as session:
        row = session.get(ApiToken, find_token_id(session, bob.token))
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert_problem(client.get("/api/whoami", headers=bob.headers), 401, "token_expired")


def test_revoked_token_is_401_token_revoked(client: TestClient, make_account: MakeAccount) -> None:
    carol = make_account("carol")
    tokens = client.get("/api/tokens", headers=carol.headers).json()
    assert len(tokens) == 1
    assert "token" not in tokens[0]
    revoked = client.delete(f"/api/tokens/{tokens[0]['id']}", headers=carol.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert_problem(client.get("/api/whoami", headers=carol.headers), 401, "token_revoked")


def test_token_lifecycle_over_http(client: TestClient, make_account: MakeAccount) -> None:
    dave = make_account("dave")
    created = client.post(
        "/api/tokens", json={"name": "ci", "scopes": ["read"], "ttl_days": 7}, headers=dave.headers
    )
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["token"].startswith("tg_")
    assert new["scopes"] == ["read"]
    me = client.get("/api/whoami", headers={"Authorization": f"Bearer {new['token']}"}).json()
    assert me["scopes"] == ["read"]
    listed = client.get("/api/tokens", headers=dave.headers).json()
    assert [t["name"] for t in listed] == ["test", "ci"]
    assert all("token" not in t for t in listed)


def test_scoped_token_cannot_mint_broader_token(
    client: TestClient, make_account: MakeAccount
) -> None:
    erin = make_account("erin", scopes=frozenset({"read"}))
    response = client.post(
        "/api/tokens", json={"name": "x", "scopes": ["read", "generate"]}, headers=erin.headers
    )
    assert_problem(response, 403, "insufficient_scope")


def test_scopes_beyond_role_refused(client: TestClient, make_account: MakeAccount) -> None:
    frank = make_account("frank")
    response = client.post(
        "/api/tokens", json={"name": "x", "scopes": ["admin"]}, headers=frank.headers
    )
    assert_problem(response, 403, "insufficient_scope")


def test_cannot_revoke_another_users_token(client: TestClient, make_account: MakeAccount) -> None:
    gina = make_account("gina")
    hank = make_account("hank")
    hank_token_id = client.get("/api/tokens", headers=hank.headers).json()[0]["id"]
    assert_problem(
        client.delete(f"/api/tokens/{hank_token_id}", headers=gina.headers), 404, "not_found"
    )
    assert client.get("/api/whoami", headers=hank.headers).status_code == 200


def test_admin_routes_need_admin_scope(client: TestClient, make_account: MakeAccount) -> None:
    dev = make_account("ivan")
    assert_problem(client.get("/api/admin/users", headers=dev.headers), 403, "insufficient_scope")
    root = make_account("root", "admin")
    created = client.post(
        "/api/admin/users",
        json={"username": "judy", "role": "publisher", "org": "acme"},
        headers=root.headers,
    )
    assert created.status_code == 201, created.text
    judy_token = created.json()["token"]
    me = client.get("/api/whoami", headers={"Authorization": f"Bearer {judy_token}"}).json()
    assert (me["username"], me["org"]) == ("judy", "acme")
    duplicate = client.post(
        "/api/admin/users", json={"username": "judy", "role": "developer"}, headers=root.headers
    )
    assert_problem(duplicate, 409, "conflict")
    no_org = client.post(
        "/api/admin/users", json={"username": "kim", "role": "publisher"}, headers=root.headers
    )
    assert_problem(no_org, 422, "validation_error")


def test_malformed_json_is_400(client: TestClient, make_account: MakeAccount) -> None:
    lee = make_account("lee")
    response = client.post(
        "/api/tokens",
        content=b'{"name": ',
        headers={**lee.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_wrong_content_type_is_415(client: TestClient, make_account: MakeAccount) -> None:
    mo = make_account("mo")
    response = client.post(
        "/api/tokens", content=b"name=x", headers={**mo.headers, "Content-Type": "text/plain"}
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_unknown_fields_are_422(client: TestClient, make_account: MakeAccount) -> None:
    ned = make_account("ned")
    response = client.post("/api/tokens", json={"name": "x", "is_admin": True}, headers=ned.headers)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"][-1] == "is_admin"


def test_oversized_body_by_content_length_is_413(
    client: TestClient, make_account: MakeAccount
) -> None:
    oz = make_account("oz")
    big = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    response = client.post(
        "/api/tokens", content=big, headers={**oz.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


def test_oversized_streamed_body_is_413_before_read_whole(
    live_server: LiveServer, make_account: MakeAccount
) -> None:
    pat = make_account("pat")
    sent = 0

    def chunks() -> object:
        nonlocal sent
        for _ in range(64):  # up to 4 MiB, over the 1 MiB limit
            sent += 65536
            yield b" " * 65536

    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        response = http.post(
            "/api/tokens",
            content=chunks(),  # type: ignore[arg-type]
            headers={**pat.headers, "Content-Type": "application/json"},
        )
    assert_problem(response, 413, "payload_too_large")
    assert "content-length" not in {k.lower() for k in response.request.headers}


def test_live_server_round_trip(live_server: LiveServer, make_account: MakeAccount) -> None:
    quinn = make_account("quinn")
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get("/readyz").status_code == 200
        me = http.get("/api/whoami", headers=quinn.headers)
        assert me.status_code == 200
        assert me.json()["username"] == "quinn"
        assert_problem(http.get("/api/whoami"), 401, "unauthenticated")
