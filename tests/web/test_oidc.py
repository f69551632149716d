"""OpenID Connect sign-in: configuration checks, and the code flow against a fake provider."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.errors import ConfigurationError
from gateway.web import oidc
from tests.conftest import Account

ISSUER = "https://id.example.test"


def settings(**values: Any) -> SimpleNamespace:
    return SimpleNamespace(**{f"oidc_{k}": v for k, v in values.items()})


def test_no_provider_is_fine() -> None:
    assert oidc.oidc_config(settings()) is None
    assert oidc.oidc_config(object()) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"client_id": "x", "client_secret": "y"}, "set oidc_issuer"),
        ({"issuer": "http://id.example.test", "client_id": "x", "client_secret": "y"}, "https"),
        ({"issuer": ISSUER, "client_secret": "y"}, "oidc_client_id"),
        ({"issuer": ISSUER, "client_id": "x", "client_secret": " "}, "oidc_client_secret"),
        ({"issuer": ISSUER, "client_id": "x", "client_secret": "y", "scopes": "email"}, "openid"),
    ],
)
def test_bad_configuration_is_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        oidc.oidc_config(settings(**values))


def test_good_configuration() -> None:
    config = oidc.oidc_config(settings(issuer=ISSUER + "/", client_id="x", client_secret="y"))
    assert config is not None
    assert config.issuer == ISSUER
    local = oidc.oidc_config(
        settings(issuer="http://127.0.0.1:9000", client_id="x", client_secret="y")
    )
    assert local is not None


class FakeProvider:
    """Stands in for the provider's endpoints; signs ID tokens with its own RSA key."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.claims: dict[str, Any] = {}
        self.nonce = ""

    def discover(self, config: oidc.OidcConfig) -> oidc.Provider:
        jwks = {"keys": [self.key.as_dict(private=False)]}
        return oidc.Provider(f"{ISSUER}/authorize", f"{ISSUER}/token", jwks)

    def client(self, config: oidc.OidcConfig, redirect_uri: str) -> Any:
        provider = self

        class Client:
            def create_authorization_url(self, url: str, **params: str) -> tuple[str, str]:
                provider.nonce = params["nonce"]
                return f"{url}?state={params['state']}&redirect_uri={redirect_uri}", params["state"]

            def fetch_token(self, url: str, code: str) -> dict[str, str]:
                now = int(time.time())
                claims = {
                    "iss": ISSUER,
                    "aud": "tiergate",
                    "sub": "42",
                    "iat": now,
                    "exp": now + 300,
                    "nonce": provider.nonce,
                    "preferred_username": "olive",
                    **provider.claims,
                }
                return {"id_token": jwt.encode({"alg": "RS256", "kid": "k1"}, claims, provider.key)}

        return Client()


@pytest.fixture
def provider(app: Any, monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    fake = FakeProvider()
    app.state.web_oidc = oidc.OidcConfig(
        issuer=ISSUER, client_id="tiergate", client_secret="s", label="Example ID"
    )
    monkeypatch.setattr(oidc, "discover", fake.discover)
    monkeypatch.setattr(oidc, "_client", fake.client)
    return fake


def _start(client: TestClient) -> str:
    started = client.get("/login/oidc", params={"next": "/account"}, follow_redirects=False)
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(f"{ISSUER}/authorize")
    return parse_qs(urlsplit(location).query)["state"][0]


def test_code_flow_signs_in_an_existing_account(
    client: TestClient, provider: FakeProvider, make_account: Callable[..., Account]
) -> None:
    make_account("olive")
    assert "Sign in with Example ID" in client.get("/login").text
    state = _start(client)
    done = client.get(oidc.CALLBACK, params={"code": "c", "state": state}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == "/account"
    assert "olive" in client.get("/account").text


@pytest.mark.parametrize(
    ("claims", "state_ok", "expect"),
    [
        ({}, False, "does not match"),
        ({"aud": "someone-else"}, True, "did not verify"),
        ({"nonce": "replayed"}, True, "did not verify"),
        ({"iss": "https://evil.test"}, True, "did not verify"),
        ({"preferred_username": "stranger"}, True, "no tiergate account"),
    ],
)
def test_bad_answers_are_refused(
    client: TestClient,
    provider: FakeProvider,
    make_account: Callable[..., Account],
    claims: dict[str, str],
    state_ok: bool,
    expect: str,
) -> None:
    make_account("olive")
    provider.claims = claims
    state = _start(client)
    answer = client.get(oidc.CALLBACK, params={"code": "c", "state": state if state_ok else "x"})
    assert answer.status_code == 401
    assert expect in answer.text
    assert client.get("/account", follow_redirects=False).status_code == 303
