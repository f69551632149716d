"""OAuth2 client credentials: clients, and the RFC 9068 JWT access tokens they are issued.

A client acts for its owner account and never beyond it: its scopes are a subset of the
owner's role scopes, checked again on every use (a demoted owner demotes their clients).
Tokens are ES256 JWTs signed with the keyring's OAuth key; verification pins the algorithm,
the type, the key id, the issuer and the audience before it trusts a single claim.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.auth.scopes import ROLE_SCOPES, parse_scopes, require_some, unknown_scopes
from gateway.config import Settings
from gateway.db.models import OAuthClient, Org, RevokedJti, Role, User
from gateway.errors import (
    Forbidden,
    NotFound,
    TokenExpired,
    TokenRevoked,
    Unauthenticated,
    ValidationFailed,
)
from gateway.ledger.events import Actor, record_event
from gateway.services import token_lineage

CLIENT_ID_PREFIX = "tgc_"
CLIENT_SECRET_PREFIX = "tgs_"  # noqa: S105 (a prefix, not a secret)
ALGORITHM = "ES256"
TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_JWT_LENGTH = 4096
_MAX_HEADER_BYTES = 1024
_CLIENT_ID = re.compile(r"tgc_[A-Za-z0-9_-]{16,64}")
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
LEEWAY_SECONDS = 30


class AccessTokenInvalid(Unauthenticated):
    code = "token_invalid"
    title = "Invalid access token"


@dataclass(frozen=True, slots=True)
class IssuedClient:
    """A new client: the secret exists only here, once."""

    client: OAuthClient
    secret: str


@dataclass(frozen=True, slots=True)
class TokenSigner:
    """The gateway's OAuth signing key and the names it signs under."""

    private_key: ec.EllipticCurvePrivateKey
    issuer: str
    audience: str
    ttl_seconds: int

    @property
    def jwk(self) -> ECKey:
        return ECKey.import_key(self.private_key)

    @property
    def public_jwk(self) -> ECKey:
        return ECKey.import_key(self.private_key.public_key())

    @property
    def kid(self) -> str:
        # RFC 7638 thumbprint: stable for the key, so rotation changes it.
        return self.public_jwk.thumbprint()

    def jwks(self) -> dict[str, Any]:
        public = self.public_jwk.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}


def token_signer(settings: Settings, private_key: ec.EllipticCurvePrivateKey) -> TokenSigner:
    return TokenSigner(
        private_key=private_key,
        issuer=settings.resolved_oauth_issuer,
        audience=settings.resolved_oauth_audience,
        ttl_seconds=settings.oauth_token_ttl_seconds,
    )


def hash_secret(secret: str) -> str:
    # 256 random bits: a plain hash is enough and keeps the check constant-time and cheap.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(client: OAuthClient, secret: str) -> bool:
    if not isinstance(secret, str) or len(secret) > 256:
        return False
    return hmac.compare_digest(client.secret_hash, hash_secret(secret))


def create_client(
    session: Session,
    owner: User,
    *,
    name: str,
    scopes: frozenset[str] | None,
    now: datetime,
    actor: Principal | None = None,
) -> IssuedClient:
    """A client for ``owner``; scopes default to (and never exceed) the owner's role's.

    Registered with a personal API token (``actor.method == "token"``), the client is bound
    to it: it stops working when that token is revoked or expires, with all it minted.
    """
    allowed = ROLE_SCOPES[Role(owner.role)]
    wanted = allowed if scopes is None else scopes
    require_some(wanted, "a client")
    unknown = unknown_scopes(wanted)
    if unknown:
        raise ValidationFailed(f"unknown scope(s): {', '.join(unknown)}")
    beyond = sorted(wanted - allowed)
    if beyond:
        raise Forbidden(f"role {owner.role!r} cannot hold scope(s): {', '.join(beyond)}")
    if not name.strip() or len(name) > 100:
        raise ValidationFailed("client name must be 1..100 characters")
    secret = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
    assert owner.id is not None
    client = OAuthClient(
        client_id=CLIENT_ID_PREFIX + secrets.token_urlsafe(16),
        secret_hash=hash_secret(secret),
        name=name.strip(),
        user_id=owner.id,
        scopes=" ".join(sorted(wanted)),
        created_at=now,
        parent_token_id=actor.token_id if actor is not None and actor.method == "token" else None,
    )
    session.add(client)
    session.flush()
    record_event(
        session,
        action="client.created",
        actor=Actor.of(actor) if actor else Actor(kind="operator"),
        resource=f"client:{client.client_id}",
        now=now,
        org_id=owner.org_id,
        fields={"owner": owner.username, "scopes": client.scopes, "name": client.name},
    )
    return IssuedClient(client, secret)


def list_clients(session: Session, user_id: int) -> list[OAuthClient]:
    query = select(OAuthClient).where(OAuthClient.user_id == user_id)
    return list(session.exec(query.order_by(col(OAuthClient.id))))


def find_client(session: Session, client_id: str, *, now: datetime) -> OAuthClient | None:
    """An active client by id, or None (unknown, revoked, its owner disabled, or the token
    that registered it revoked or expired)."""
    if not isinstance(client_id, str) or _CLIENT_ID.fullmatch(client_id) is None:
        return None
    client = session.exec(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()
    if client is None or not token_lineage.client_is_live(session, client, now=now):
        return None
    return client


def revoke_client(
    session: Session, principal: Principal, client_id: str, *, now: datetime
) -> OAuthClient:
    client = session.exec(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()
    if client is None or (client.user_id != principal.user_id and not principal.is_admin):
        raise NotFound(f"no client {client_id!r}")
    # Whatever its access tokens minted dies with it (also on a repeated revoke: a token
    # minted in a race with the first one must not survive).
    token_lineage.revoke_minted_by(session, client_id=client.client_id, now=now)
    if client.revoked_at is None:
        client.revoked_at = now
        session.add(client)
        record_event(
            session,
            action="client.revoked",
            actor=Actor.of(principal),
            resource=f"client:{client.client_id}",
            now=now,
        )
    return client


def effective_scopes(session: Session, client: OAuthClient) -> frozenset[str]:
    owner = session.get(User, client.user_id)
    if owner is None:
        return frozenset()
    return parse_scopes(client.scopes) & ROLE_SCOPES[Role(owner.role)]


def mint_access_token(
    signer: TokenSigner, client: OAuthClient, owner: User, scope: str, *, now: datetime
) -> tuple[str, dict[str, Any]]:
    """An RFC 9068 access token and its claims."""
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": signer.issuer,
        "aud": signer.audience,
        "sub": owner.username,
        "client_id": client.client_id,
        "scope": scope,
        "iat": issued,
        "nbf": issued,
        "exp": issued + signer.ttl_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": signer.kid}
    return jwt.encode(header, claims, signer.jwk, algorithms=[ALGORITHM]), claims


def looks_like_jwt(token: str) -> bool:
    return len(token) <= MAX_JWT_LENGTH and _JWT_SHAPE.fullmatch(token) is not None


def _b64url_json(segment: str) -> dict[str, Any]:
    if len(segment) > _MAX_HEADER_BYTES * 2:
        raise AccessTokenInvalid("the access token header is too large")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise AccessTokenInvalid("the access token header is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise AccessTokenInvalid("the access token header is not a JSON object")
    return value


def decode_access_token(signer: TokenSigner, token: str) -> dict[str, Any]:
    """Verify signature, header, issuer and audience; return the claims (expiry not checked).

    The header is checked before the signature: only ES256 with our ``kid`` is ever tried,
    so ``alg: none`` and HS256-with-the-public-key never reach a verifier.
    """
    if not looks_like_jwt(token):
        raise AccessTokenInvalid("the bearer token is not a JWT")
    header = _b64url_json(token.split(".", 1)[0])
    if header.get("alg") != ALGORITHM:
        raise AccessTokenInvalid(f"access tokens are signed with {ALGORITHM} only")
    if str(header.get("typ", "")).lower() not in TOKEN_TYPES:
        raise AccessTokenInvalid("the token is not an access token (typ at+jwt)")
    if not isinstance(header.get("kid"), str) or not hmac.compare_digest(header["kid"], signer.kid):
        raise AccessTokenInvalid("the token is signed by an unknown key")
    try:
        decoded = jwt.decode(token, signer.public_jwk, algorithms=[ALGORITHM])
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise AccessTokenInvalid("the access token signature does not verify") from exc
    claims = dict(decoded.claims)
    if claims.get("iss") != signer.issuer:
        raise AccessTokenInvalid("the access token was issued by another issuer")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if signer.audience not in audiences:
        raise AccessTokenInvalid("the access token is meant for another audience")
    for name in ("sub", "client_id", "jti", "scope"):
        if not isinstance(claims.get(name), str):
            raise AccessTokenInvalid(f"the access token lacks the {name!r} claim")
    for name in ("exp", "iat"):
        if isinstance(claims.get(name), bool) or not isinstance(claims.get(name), int):
            raise AccessTokenInvalid(f"the access token lacks the {name!r} claim")
    return claims


def is_expired(claims: dict[str, Any], now: datetime) -> bool:
    return int(claims["exp"]) <= int(now.timestamp())


def is_revoked(session: Session, claims: dict[str, Any]) -> bool:
    return session.get(RevokedJti, str(claims["jti"])) is not None


def revoke_jti(session: Session, claims: dict[str, Any], *, now: datetime) -> None:
    jti = str(claims["jti"])
    token_lineage.revoke_minted_by(session, jti=jti, now=now)
    if session.get(RevokedJti, jti) is None:
        session.add(
            RevokedJti(
                jti=jti,
                client_id=str(claims["client_id"]),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo),
                revoked_at=now,
            )
        )
        session.flush()
        record_event(
            session,
            action="token.revoked",
            actor=Actor(kind="client", name=str(claims["client_id"])),
            resource=f"client:{claims['client_id']}",
            now=now,
            fields={"jti": jti},
        )


def authenticate_access_token(
    session: Session, signer: TokenSigner, token: str, *, now: datetime
) -> Principal:
    """The principal a client-credentials JWT speaks for, or a typed 401."""
    claims = decode_access_token(signer, token)
    epoch = int(now.timestamp())
    if int(claims["exp"]) <= epoch:
        raise TokenExpired("this access token has expired; request a new one")
    not_before = max(int(claims["iat"]), int(claims.get("nbf", 0)))
    if not_before > epoch + LEEWAY_SECONDS:
        raise AccessTokenInvalid("this access token is not valid yet")
    if is_revoked(session, claims):
        raise TokenRevoked("this access token has been revoked")
    client = find_client(session, str(claims["client_id"]), now=now)
    owner = session.get(User, client.user_id) if client else None
    if client is None or owner is None or owner.username != claims["sub"]:
        raise AccessTokenInvalid("the client behind this access token is gone or revoked")
    org = session.get(Org, owner.org_id) if owner.org_id is not None else None
    assert owner.id is not None
    return Principal(
        user_id=owner.id,
        username=owner.username,
        role=Role(owner.role),
        org_id=owner.org_id,
        org=org.name if org else None,
        scopes=parse_scopes(str(claims["scope"])) & effective_scopes(session, client),
        method="oauth",
        client_id=client.client_id,
        jti=str(claims["jti"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
    )
