"""Optional sign-in through an external OpenID Connect provider (authorization code flow).

Configured from settings (``oidc_issuer``, ``oidc_client_id``, ``oidc_client_secret``,
``oidc_scopes``, ``oidc_username_claim``, ``oidc_label``); a partial or unsafe configuration
stops the gateway at start-up rather than at the first sign-in. The provider's answer is
mapped to an *existing* account by a claim (default ``preferred_username``): accounts are
never created from outside.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import Query, Request
from fastapi.responses import RedirectResponse, Response

from gateway.deps import NowDep, Public, SessionDep, StateDep
from gateway.errors import Unauthenticated
from gateway.services import web_sessions
from gateway.web._oidc_config import OidcConfig as OidcConfig
from gateway.web._oidc_config import configured
from gateway.web._oidc_config import oidc_config as oidc_config
from gateway.web.common import page_router, safe_next
from gateway.web.sessions import is_secure, set_session_cookie

router = page_router()
STATE_COOKIE = "tiergate_oidc"
CALLBACK = "/login/oidc/callback"
_TIMEOUT = httpx.Timeout(5.0)


class OidcFailed(Unauthenticated):
    code = "oidc_failed"
    title = "Sign-in failed"


@dataclass(frozen=True, slots=True)
class Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks: dict[str, Any]


def discover(config: OidcConfig) -> Provider:
    """Read the provider's metadata and keys (fetched per sign-in: no state in the process)."""
    with httpx.Client(timeout=_TIMEOUT) as http:
        meta = http.get(f"{config.issuer}/.well-known/openid-configuration").json()
        if meta.get("issuer", "").rstrip("/") != config.issuer:
            raise OidcFailed("the provider's metadata names another issuer")
        jwks = http.get(meta["jwks_uri"]).json()
    return Provider(meta["authorization_endpoint"], meta["token_endpoint"], jwks)


def _client(config: OidcConfig, redirect_uri: str) -> Any:
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(
        config.client_id,
        config.client_secret,
        scope=config.scopes,
        redirect_uri=redirect_uri,
        timeout=_TIMEOUT,
    )


def _pack(*parts: str) -> str:
    return ".".join(base64.urlsafe_b64encode(p.encode()).decode().rstrip("=") for p in parts)


def _unpack(value: str) -> list[str]:
    try:
        return [
            base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode() for p in value.split(".")
        ]
    except (ValueError, UnicodeDecodeError):
        return []


def verify_id_token(
    config: OidcConfig, provider: Provider, id_token: str, nonce: str
) -> dict[str, Any]:
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        token = jwt.decode(id_token, KeySet.import_key_set(provider.jwks))  # type: ignore[arg-type]
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise OidcFailed(f"the provider's ID token did not verify: {exc}") from exc
    return dict(token.claims)


@router.get("/login/oidc", dependencies=[Public])
def oidc_start(request: Request, next: str = "/") -> Response:
    config = configured(request)
    if config is None:
        raise OidcFailed("this gateway has no OpenID Connect provider configured")
    provider = discover(config)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    client = _client(config, str(request.url_for("oidc_callback")))
    url, _ = client.create_authorization_url(
        provider.authorization_endpoint, state=state, nonce=nonce
    )
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        STATE_COOKIE,
        _pack(state, nonce, safe_next(next)),
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=CALLBACK,
    )
    return response


@router.get(CALLBACK, name="oidc_callback", dependencies=[Public])
def oidc_callback(
    request: Request,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    code: Annotated[str, Query(max_length=2048)] = "",
    returned: Annotated[str, Query(alias="state", max_length=256)] = "",
) -> Response:
    config = configured(request)
    if config is None:
        raise OidcFailed("this gateway has no OpenID Connect provider configured")
    saved = _unpack(request.cookies.get(STATE_COOKIE, ""))
    if len(saved) != 3 or not hmac.compare_digest(saved[0].encode(), returned.encode()):
        raise OidcFailed("the sign-in answer does not match a sign-in started here; try again")
    if not code:
        raise OidcFailed("the provider did not return an authorization code")
    _, nonce, target = saved
    provider = discover(config)
    client = _client(config, str(request.url_for("oidc_callback")))
    tokens = client.fetch_token(provider.token_endpoint, code=code)
    claims = verify_id_token(config, provider, str(tokens.get("id_token", "")), nonce)
    username = str(claims.get(config.username_claim, "")).lower()
    cookie = web_sessions.sign_in_with_identity(
        session, username, method="oidc", issuer=config.issuer, now=now
    )
    if cookie is None:
        raise OidcFailed("no tiergate account matches your identity; ask an administrator")
    response = RedirectResponse(safe_next(target), status_code=303)
    set_session_cookie(response, cookie, secure=is_secure(request, state.settings.public_url))
    response.delete_cookie(STATE_COOKIE, path=CALLBACK)
    return response
