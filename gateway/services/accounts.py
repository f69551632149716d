"""Accounts use cases: orgs, users and personal API tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.auth.scopes import ROLE_SCOPES, parse_scopes, require_some, unknown_scopes
from gateway.auth.tokens import display_prefix, generate_token, hash_token, looks_like_token
from gateway.db.conflicts import insert_unique
from gateway.db.engine import begin_write
from gateway.db.models import MAX_ROW_ID, ApiToken, Org, Role, User
from gateway.db.timeutil import as_utc
from gateway.errors import (
    Conflict,
    Forbidden,
    InsufficientScope,
    NotFound,
    TokenExpired,
    TokenRevoked,
    Unauthenticated,
    ValidationFailed,
)
from gateway.services import token_lineage

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_TOKEN_TTL_DAYS = 3650


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly created token: the plaintext exists only here, once."""

    token: ApiToken
    plaintext: str


def validate_name(kind: str, name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationFailed(
            f"invalid {kind} name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def get_or_create_org(session: Session, name: str) -> Org:
    validate_name("org", name)
    org = session.exec(select(Org).where(Org.name == name)).first()
    if org is None:
        org = Org(name=name)
        if not insert_unique(session, org):
            # Created at the same moment for another user: join it.
            org = session.exec(select(Org).where(Org.name == name)).one()
    return org


def create_user(session: Session, username: str, role: Role, org: str | None = None) -> User:
    validate_name("user", username)
    if role is Role.publisher and not org:
        raise ValidationFailed("a publisher must belong to an org: pass --org ORG")
    begin_write(session)
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise Conflict(f"user {username!r} already exists")
    org_row = get_or_create_org(session, org) if org else None
    user = User(username=username, role=role.value, org_id=org_row.id if org_row else None)
    if not insert_unique(session, user):
        # Two registrations of one name at once (another replica won): a conflict, not a 503.
        raise Conflict(f"user {username!r} already exists")
    return user


def get_user(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.id))))


def role_of(user: User) -> Role:
    return Role(user.role)


def issue_token(
    session: Session,
    user: User,
    *,
    name: str,
    now: datetime,
    scopes: frozenset[str] | None = None,
    ttl_days: int | None = 90,
    parent: Principal | None = None,
) -> IssuedToken:
    """Create a token for ``user``; scopes default to (and may never exceed) the role's.

    With ``parent`` (the credential presenting the request) the token is bound to it: its
    scopes default to and stay within the parent's, it expires no later than the parent,
    and revoking the parent revokes it (see :mod:`gateway.services.token_lineage`).
    """
    allowed = ROLE_SCOPES[role_of(user)]
    if parent is not None:
        if parent.user_id != user.id:
            raise Forbidden("a credential mints tokens for its own account only")
        allowed = allowed & parent.scopes
    wanted = allowed if scopes is None else scopes
    require_some(wanted, "a token")
    unknown = unknown_scopes(wanted)
    if unknown:
        raise ValidationFailed(f"unknown scope(s): {', '.join(unknown)}")
    beyond = sorted(wanted - allowed)
    if beyond:
        if parent is not None:
            # A token can never mint a token more powerful than itself.
            raise InsufficientScope(
                f"a new token cannot have scope(s) the presenting credential lacks: "
                f"{', '.join(beyond)}"
            )
        raise Forbidden(f"role {user.role!r} cannot hold scope(s): {', '.join(beyond)}")
    if ttl_days is not None and not 1 <= ttl_days <= MAX_TOKEN_TTL_DAYS:
        raise ValidationFailed(f"token lifetime must be 1..{MAX_TOKEN_TTL_DAYS} days")
    if not name or len(name) > 100:
        raise ValidationFailed("token name must be 1..100 characters")
    expires_at = now + timedelta(days=ttl_days) if ttl_days is not None else None
    lineage = _lineage_of(session, parent)
    if parent is not None and parent.expires_at is not None:
        # Never outlive the parent: the lifetime asked for is capped (the answer shows it).
        parent_expiry = as_utc(parent.expires_at)
        expires_at = parent_expiry if expires_at is None else min(expires_at, parent_expiry)
    plaintext = generate_token()
    assert user.id is not None
    token = ApiToken(
        user_id=user.id,
        name=name,
        prefix=display_prefix(plaintext),
        token_hash=hash_token(plaintext),
        scopes=" ".join(sorted(wanted)),
        created_at=now,
        expires_at=expires_at,
        **lineage,
    )
    session.add(token)
    session.flush()
    return IssuedToken(token=token, plaintext=plaintext)


def _lineage_of(session: Session, parent: Principal | None) -> dict[str, Any]:
    """The parent columns for a token minted by ``parent`` (none for operator-made tokens)."""
    if parent is None or parent.method == "web":
        # A signed-in person at the web page is the account itself, not a credential.
        return {}
    if parent.method == "oauth":
        if parent.client_id is None or parent.jti is None:
            raise Unauthenticated("the presenting access token lacks its client or jti")
        return {"parent_client_id": parent.client_id, "parent_jti": parent.jti}
    if parent.token_id is None:
        raise Unauthenticated("the presenting credential cannot mint tokens")
    if token_lineage.depth_of(session, parent.token_id) >= token_lineage.MAX_DEPTH:
        raise ValidationFailed(
            f"tokens may be minted at most {token_lineage.MAX_DEPTH} levels deep: "
            "mint this one from a token higher up the chain"
        )
    return {"parent_token_id": parent.token_id}


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(col(ApiToken.id))
    return list(session.exec(query))


def revoke_token(
    session: Session, token_id: int, *, now: datetime, owner_id: int | None = None
) -> ApiToken:
    """Revoke one token. With ``owner_id`` the token must belong to that user (else 404)."""
    token = session.get(ApiToken, token_id)
    if token is None or (owner_id is not None and token.user_id != owner_id):
        raise NotFound(f"no token with id {token_id}")
    if token.revoked_at is None:
        token.revoked_at = now
        session.add(token)
        session.flush()
    # Also when it was revoked before: a descendant minted in a race must not survive it.
    token_lineage.revoke_descendants(session, [token_id], now=now)
    return token


def find_token_id(session: Session, ref: str) -> int:
    """Resolve a token id, a full plaintext token, or a display prefix to a token id."""
    if ref.isascii() and ref.isdigit():
        # Bounded before int(): a row id is at most 10 digits (MAX_ROW_ID).
        token_id = int(ref) if len(ref) <= 10 else 0
        if not 1 <= token_id <= MAX_ROW_ID:
            raise NotFound(f"no token with id {ref[:20]}")
        return token_id
    if looks_like_token(ref) and len(ref) > 20:
        row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(ref))).first()
    else:
        matches = list(session.exec(select(ApiToken).where(ApiToken.prefix == ref)))
        if len(matches) > 1:
            raise Conflict(f"prefix {ref!r} matches {len(matches)} tokens; use the token id")
        row = matches[0] if matches else None
    if row is None or row.id is None:
        raise NotFound(f"no token matches {ref!r}")
    return row.id


def authenticate(session: Session, plaintext: str, *, now: datetime) -> Principal:
    """The principal behind a bearer token, or a typed 401."""
    if not looks_like_token(plaintext):
        raise Unauthenticated("the bearer token is not a tiergate token")
    token = session.exec(
        select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext))
    ).first()
    if token is None:
        raise Unauthenticated("unknown token")
    if token.revoked_at is not None:
        raise TokenRevoked("this token has been revoked")
    if token.expires_at is not None and as_utc(token.expires_at) <= now:
        raise TokenExpired("this token has expired; create a new one")
    user = session.get(User, token.user_id)
    if user is None or user.disabled:
        raise Unauthenticated("the account behind this token is disabled")
    token_lineage.check_lineage(session, token, now=now)
    org = session.get(Org, user.org_id) if user.org_id is not None else None
    assert user.id is not None
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role_of(user),
        org_id=user.org_id,
        org=org.name if org else None,
        scopes=parse_scopes(token.scopes),
        token_id=token.id,
        expires_at=as_utc(token.expires_at) if token.expires_at is not None else None,
    )
