"""Browser sign-in and sessions: the rules behind the web pages' cookies.

A session is a random cookie whose sha256 names a `web_sessions` row. Rows live in the
database, so any gateway replica accepts any session and signing out anywhere ends it
everywhere. Signing in (password or an identity provider) is rate limited per account and
per address and logged as `web.signed_in`; the web layer only moves cookies.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from gateway.auth.passwords import verify_password
from gateway.auth.principal import Principal
from gateway.auth.scopes import ROLE_SCOPES
from gateway.db.models import Org, Role, User, WebSession
from gateway.db.timeutil import as_utc
from gateway.ledger.events import Actor, record_event
from gateway.services import ratelimit

__all__ = [
    "SESSION_LIFETIME",
    "SIGN_INS_PER_ACCOUNT",
    "SIGN_INS_PER_ADDRESS",
    "WebViewer",
    "end_session",
    "find_viewer",
    "limit_sign_ins",
    "principal_of",
    "sessions_of",
    "sign_in_with_identity",
    "sign_in_with_password",
    "start_session",
]

SESSION_LIFETIME = timedelta(hours=12)
MAX_COOKIE = 128
# Sign-in attempts per window: per account name (guessing one password) and per client
# address (spraying many accounts).
SIGN_INS_PER_ACCOUNT = 10
SIGN_INS_PER_ADDRESS = 60


@dataclass(frozen=True, slots=True)
class WebViewer:
    principal: Principal
    csrf_secret: str


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("ascii")).hexdigest()


def principal_of(session: Session, user: User, *, method: str = "web") -> Principal:
    """What a signed-in person may do: everything their role allows (no token narrowing)."""
    role = Role(user.role)
    org = session.get(Org, user.org_id) if user.org_id is not None else None
    assert user.id is not None
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role,
        org_id=user.org_id,
        org=org.name if org else None,
        scopes=ROLE_SCOPES[role],
        method=method,
    )


def start_session(session: Session, user: User, *, method: str, now: datetime) -> str:
    """Create a session row and return the cookie value (the only place it exists)."""
    cookie = secrets.token_urlsafe(32)
    assert user.id is not None
    session.add(
        WebSession(
            id_hash=_hash(cookie),
            user_id=user.id,
            csrf_secret=secrets.token_hex(32),
            method=method,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    # Expired rows are pruned opportunistically at sign-in, so no background job is needed.
    session.exec(delete(WebSession).where(col(WebSession.expires_at) < now))  # type: ignore[call-overload]
    session.flush()
    return cookie


def end_session(session: Session, cookie: str | None) -> None:
    if cookie and len(cookie) <= MAX_COOKIE:
        row = session.get(WebSession, _hash(cookie))
        if row is not None:
            session.delete(row)
            session.flush()


def find_viewer(session: Session, cookie: str | None, *, now: datetime) -> WebViewer | None:
    if not cookie or len(cookie) > MAX_COOKIE or not cookie.isascii():
        return None
    row = session.get(WebSession, _hash(cookie))
    if row is None or as_utc(row.expires_at) <= now:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return WebViewer(principal_of(session, user), row.csrf_secret)


def sessions_of(session: Session, user_id: int) -> list[WebSession]:
    query = select(WebSession).where(WebSession.user_id == user_id)
    return list(session.exec(query.order_by(col(WebSession.created_at))))


def limit_sign_ins(
    engine: Engine, username: str, address: str, *, window_seconds: int, now: datetime
) -> None:
    """Count one attempt for the account and the address; raises ``RateLimited`` past either."""
    ratelimit.hit(
        engine,
        [
            ratelimit.Limit(
                ratelimit.bucket_key("web-login", username[:64]),
                SIGN_INS_PER_ACCOUNT,
                window_seconds,
            ),
            ratelimit.Limit(
                ratelimit.bucket_key("web-login-addr", address),
                SIGN_INS_PER_ADDRESS,
                window_seconds,
            ),
        ],
        now=now,
    )


def _signed_in(
    session: Session, user: User, *, method: str, now: datetime, fields: dict[str, str]
) -> str:
    cookie = start_session(session, user, method=method, now=now)
    record_event(
        session,
        action="web.signed_in",
        actor=Actor.of(principal_of(session, user)),
        resource=f"user:{user.username}",
        now=now,
        org_id=user.org_id,
        fields=fields,
    )
    return cookie


def _active_user(session: Session, username: str) -> User | None:
    user = session.exec(select(User).where(User.username == username)).first()
    return None if user is None or user.disabled else user


def sign_in_with_password(
    session: Session, username: str, password: str, *, now: datetime
) -> str | None:
    """The new session's cookie, or None for an unknown name or a wrong password (the same
    answer for both, and the same work: the hash is checked even for unknown names)."""
    user = _active_user(session, username)
    if not verify_password(password, user.password_hash if user is not None else None):
        return None
    assert user is not None
    return _signed_in(session, user, method="password", now=now, fields={"method": "password"})


def sign_in_with_identity(
    session: Session, username: str, *, method: str, issuer: str, now: datetime
) -> str | None:
    """A session for an account an identity provider vouched for, or None if none matches."""
    user = _active_user(session, username)
    if user is None:
        return None
    return _signed_in(
        session, user, method=method, now=now, fields={"method": method, "issuer": issuer}
    )
