"""authlib's OAuth2 server classes, wired to our database, signer and clock.

One server object is built per request (it holds that request's session and clock), so
nothing is shared between requests or replicas. The token, introspection (RFC 7662) and
revocation (RFC 7009) endpoints accept client_secret_basic and client_secret_post.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidScopeError,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlmodel import Session

from gateway.auth.scopes import parse_scopes
from gateway.db.models import OAuthClient, User
from gateway.errors import GatewayError
from gateway.ledger.events import Actor, record_event
from gateway.services import oauth

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# TLS is terminated in front of the gateway (reverse proxy, see infra/): the scheme this
# process sees says nothing about the client's connection, so authlib's scheme check is
# given the deployment's answer rather than the proxied request's.
_SECURE_URI = "https://tiergate.invalid"


@dataclass
class OAuthReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ClientModel(ClientMixin):  # type: ignore[misc]
    """authlib's view of an :class:`OAuthClient`."""

    def __init__(self, row: OAuthClient, scopes: frozenset[str]) -> None:
        self.row = row
        self.scopes = scopes

    def get_client_id(self) -> str:
        return self.row.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return oauth.secret_matches(self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def get_allowed_scope(self, scope: str | None) -> str:
        wanted = self.scopes if not scope else parse_scopes(scope)
        return " ".join(sorted(wanted & self.scopes))


class TokenModel:
    """authlib's view of verified access-token claims."""

    def __init__(self, claims: dict[str, Any], server: TiergateAuthorizationServer) -> None:
        self.claims = claims
        self.server = server

    def check_client(self, client: ClientModel) -> bool:
        return bool(self.claims["client_id"] == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.claims["scope"])

    def get_expires_in(self) -> int:
        return int(self.claims["exp"]) - int(self.claims["iat"])

    def is_expired(self) -> bool:
        return oauth.is_expired(self.claims, self.server.now)

    def is_revoked(self) -> bool:
        session = self.server.session
        return oauth.is_revoked(session, self.claims) or (
            oauth.find_client(session, str(self.claims["client_id"]), now=self.server.now) is None
        )


class FormRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, path: str, headers: dict[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", _SECURE_URI + path, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> defaultdict[str, list[str]]:
        return defaultdict(list)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        # A client may ask for less than it holds, never more.
        requested = self.request.payload.scope
        client: ClientModel = self.request.client
        if "scope" in self.request.payload.data and not parse_scopes(str(requested or "")):
            # Present but empty is not "omitted": it never means every scope the client holds.
            raise InvalidScopeError("the scope parameter is empty; omit it for the defaults")
        if requested and not parse_scopes(requested) <= client.scopes:
            raise InvalidScopeError("the client may not hold the requested scope")


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenModel | None:
        server: TiergateAuthorizationServer = self.server
        return server.query_token(token_string)

    def check_permission(self, token: TokenModel, client: ClientModel, request: Any) -> bool:
        # A client sees its own tokens; an admin-scoped client (a resource server) sees all.
        return token.check_client(client) or "admin" in client.scopes

    def introspect_token(self, token: TokenModel) -> dict[str, Any]:
        claims = token.claims
        return {
            "active": True,
            "scope": claims["scope"],
            "client_id": claims["client_id"],
            "username": claims["sub"],
            "sub": claims["sub"],
            "token_type": "Bearer",
            "exp": claims["exp"],
            "iat": claims["iat"],
            "aud": claims["aud"],
            "iss": claims["iss"],
            "jti": claims["jti"],
        }


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenModel | None:
        server: TiergateAuthorizationServer = self.server
        return server.query_token(token_string)

    def revoke_token(self, token: TokenModel, request: Any) -> None:
        oauth.revoke_jti(self.server.session, token.claims, now=self.server.now)


class TiergateAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, session: Session, signer: oauth.TokenSigner, now: datetime) -> None:
        super().__init__(scopes_supported=None)
        self.session = session
        self.signer = signer
        self.now = now
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> ClientModel | None:
        row = oauth.find_client(self.session, client_id, now=self.now)
        if row is None:
            return None
        return ClientModel(row, oauth.effective_scopes(self.session, row))

    def query_token(self, token_string: str) -> TokenModel | None:
        try:
            claims = oauth.decode_access_token(self.signer, token_string)
        except GatewayError:
            return None  # RFC 7662/7009: an unknown token is simply not active
        return TokenModel(claims, self)

    def _generate(
        self,
        grant_type: str,
        client: ClientModel,
        user: object = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        owner = self.session.get(User, client.row.user_id)
        assert owner is not None
        granted = client.get_allowed_scope(scope)
        token, claims = oauth.mint_access_token(
            self.signer, client.row, owner, granted, now=self.now
        )
        record_event(
            self.session,
            action="token.issued",
            actor=Actor(kind="client", name=client.row.client_id, user_id=owner.id),
            resource=f"client:{client.row.client_id}",
            now=self.now,
            org_id=owner.org_id,
            fields={"jti": claims["jti"], "scope": granted, "exp": claims["exp"]},
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.signer.ttl_seconds,
            "scope": granted,
        }

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Nothing to store: the JWT is self-contained and its issuance is in the log."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal system here."""

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthReply:
        return OAuthReply(status, dict(body or {}), dict(headers or []))
