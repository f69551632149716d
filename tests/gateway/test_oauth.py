"""OAuth2 client credentials: clients, JWT access tokens, introspection, revocation, JWT attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from gateway.services.oauth import token_signer
from tests.conftest import Account
from tests.gateway.test_health_and_errors import assert_problem

MakeAccount = Callable[..., Account]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_client(client: TestClient, owner: Account, **body: Any) -> dict[str, Any]:
    response = client.post("/api/clients", json={"name": "svc", **body}, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def fetch_token(
    client: TestClient, creds: dict[str, Any], *, basic: bool = True, **form: str
) -> Any:
    data = {"grant_type": "client_credentials", **form}
    if basic:
        return client.post(
            "/oauth/token", data=data, auth=(creds["client_id"], creds["client_secret"])
        )
    data.update(client_id=creds["client_id"], client_secret=creds["client_secret"])
    return client.post("/oauth/token", data=data)


def whoami(client: TestClient, token: str) -> Any:
    return client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})


def test_client_credentials_tokens_work_like_api_tokens(
    app: FastAPI, client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    creds = make_client(client, dev, scopes=["read", "access"])
    assert creds["client_secret"].startswith("tgs_")
    listed = client.get("/api/clients", headers=dev.headers).json()
    assert [c["client_id"] for c in listed] == [creds["client_id"]]
    assert "client_secret" not in listed[0]

    for basic in (True, False):
        issued = fetch_token(client, creds, basic=basic)
        assert issued.status_code == 200, issued.text
        assert issued.headers["cache-control"] == "no-store"
        body = issued.json()
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "access read"
    token = body["access_token"]
    header = json.loads(unb64(token.split(".")[0]))
    state = app.state.gateway
    signer = token_signer(state.settings, state.keyring.oauth_signing_key)
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": signer.kid}
    claims = json.loads(unb64(token.split(".")[1]))
    assert {"iss", "aud", "exp", "iat", "jti", "client_id", "sub", "scope"} <= claims.keys()
    assert claims["sub"] == "dev"
    me = whoami(client, token).json()
    assert (me["username"], me["auth_method"]) == ("dev", "oauth")
    assert sorted(me["scopes"]) == ["access", "read"]
    # The token's scopes bound it: no generation with a read/access token.
    narrow = fetch_token(client, creds, scope="read").json()
    assert (
        client.get(
            "/api/access/grants", headers={"Authorization": f"Bearer {narrow['access_token']}"}
        ).status_code
        == 200
    )
    jwks = client.get("/oauth/jwks").json()
    assert jwks["keys"][0]["kid"] == signer.kid

    # Introspection: the client sees its own token; revocation makes it inactive at once.
    auth = (creds["client_id"], creds["client_secret"])
    active = client.post("/oauth/introspect", data={"token": token}, auth=auth).json()
    assert active["active"] is True
    assert active["client_id"] == creds["client_id"]
    other = make_client(client, make_account("eve"))
    hidden = client.post(
        "/oauth/introspect",
        data={"token": token},
        auth=(other["client_id"], other["client_secret"]),
    ).json()
    assert hidden == {"active": False}
    assert client.post("/oauth/revoke", data={"token": token}, auth=auth).status_code == 200
    assert client.post("/oauth/introspect", data={"token": token}, auth=auth).json() == {
        "active": False
    }
    assert_problem(whoami(client, token), 401, "token_revoked")
    assert client.post("/oauth/introspect", data={"token": "garbage"}, auth=auth).json() == {
        "active": False
    }

    # Revoking the client kills its tokens; a wrong secret is an OAuth invalid_client.
    fresh = fetch_token(client, creds).json()["access_token"]
    client.delete(f"/api/clients/{creds['client_id']}", headers=dev.headers)
    assert_problem(whoami(client, fresh), 401, "token_invalid")
    bad = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(other["client_id"], "tgs_wrong"),
    )
    body = assert_problem(bad, 401, "oauth_invalid_client")
    assert body["error"] == "invalid_client"


def test_client_scopes_never_exceed_the_owner(
    client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    assert_problem(
        client.post("/api/clients", json={"name": "x", "scopes": ["admin"]}, headers=dev.headers),
        403,
        "insufficient_scope",
    )
    creds = make_client(client, dev, scopes=["read"])
    assert_problem(fetch_token(client, creds, scope="read publish"), 400, "oauth_invalid_scope")
    assert_problem(
        client.post("/oauth/token", data={"grant_type": "password"}, auth=("a", "b")),
        400,
        "oauth_unsupported_grant_type",
    )
    # Clients cannot register further clients, and someone else's client is a 404.
    token = fetch_token(client, creds).json()["access_token"]
    minted = client.post(
        "/api/clients", json={"name": "y"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert_problem(minted, 403, "forbidden")
    other = make_account("eve")
    assert_problem(
        client.delete(f"/api/clients/{creds['client_id']}", headers=other.headers), 404, "not_found"
    )
    admin = make_account("root", "admin")
    made = client.post(
        "/api/clients", json={"name": "for-dev", "user": "dev"}, headers=admin.headers
    )
    assert made.status_code == 201, made.text
    assert made.json()["owner"] == "dev"
    assert "admin" not in made.json()["scopes"]


def _signed(
    private_key: ec.EllipticCurvePrivateKey, header: dict[str, Any], claims: dict[str, Any]
) -> str:
    return jwt.encode(header, claims, ECKey.import_key(private_key), algorithms=["ES256"])


def _forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


ATTACKS = [
    "alg_none",
    "hs256_with_public_key",
    "unknown_kid",
    "other_key_our_kid",
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "tampered_signature",
    "tampered_claims",
    "not_an_access_token",
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_jwt_attacks_are_refused(
    app: FastAPI, client: TestClient, make_account: MakeAccount
) -> None:
    dev = make_account("dev")
    creds = make_client(client, dev, scopes=["read"])
    token = fetch_token(client, creds).json()["access_token"]
    assert whoami(client, token).status_code == 200
    state = app.state.gateway
    our_key: ec.EllipticCurvePrivateKey = state.keyring.oauth_signing_key
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(unb64(header_b64))
    claims = json.loads(unb64(claims_b64))
    public_pem = our_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    stranger = ec.generate_private_key(ec.SECP256R1())
    escalated = {**claims, "scope": "read admin publish"}
    flipped = signature_b64[:-3] + ("AAA" if signature_b64[-3:] != "AAA" else "BBB")
    forged = {
        "alg_none": _forge({**header, "alg": "none"}, escalated, lambda _: b""),
        "hs256_with_public_key": _forge(
            {**header, "alg": "HS256"},
            escalated,
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
        ),
        "unknown_kid": _signed(stranger, {**header, "kid": "someone-else"}, escalated),
        "other_key_our_kid": _signed(stranger, header, escalated),
        "expired": _signed(our_key, header, {**claims, "exp": claims["iat"] - 1}),
        "wrong_audience": _signed(our_key, header, {**claims, "aud": "https://elsewhere.example"}),
        "wrong_issuer": _signed(our_key, header, {**claims, "iss": "https://evil.example"}),
        "tampered_signature": f"{header_b64}.{claims_b64}.{flipped}",
        "tampered_claims": f"{header_b64}.{b64(json.dumps(escalated).encode())}.{signature_b64}",
        "not_an_access_token": _signed(our_key, {**header, "typ": "JWT"}, claims),
    }
    assert set(forged) == set(ATTACKS)
    for name, bad in forged.items():
        expected = "token_expired" if name == "expired" else "token_invalid"
        body = assert_problem(whoami(client, bad), 401, expected)
        assert "Traceback" not in body["detail"], name
    # Revoked jti: the real token stops working once revoked.
    client.post(
        "/oauth/revoke",
        data={"token": token},
        auth=(creds["client_id"], creds["client_secret"]),
    )
    assert_problem(whoami(client, token), 401, "token_revoked")
