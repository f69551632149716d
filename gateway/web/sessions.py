"""Browser sessions: a random cookie whose sha256 names a `web_sessions` row.

Rows live in the database, so any gateway replica accepts any session and signing out
anywhere ends it everywhere. The cookie is HttpOnly, SameSite=Lax, and Secure over TLS.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlmodel import Session, col, delete, select

from gateway.auth.principal import Principal
from gateway.auth.scopes import ROLE_SCOPES
from gateway.db.models import Org, Role, User, WebSession
from gateway.db.timeutil import as_utc
from gateway.deps import AUTHZ_ATTRIBUTE, NowDep, SessionDep, StateDep
from gateway.errors import Unauthenticated

COOKIE = "tiergate_session"
SESSION_LIFETIME = timedelta(hours=12)
_MAX_COOKIE = 128


class LoginRequired(Unauthenticated):
    """A page needs a signed-in account; the web error handler turns it into a redirect."""

    code = "login_required"
    title = "Sign in required"


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
    if cookie and len(cookie) <= _MAX_COOKIE:
        row = session.get(WebSession, _hash(cookie))
        if row is not None:
            session.delete(row)
            session.flush()


def find_viewer(session: Session, cookie: str | None, *, now: datetime) -> WebViewer | None:
    if not cookie or len(cookie) > _MAX_COOKIE or not cookie.isascii():
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


def is_secure(request: Request, state_public_url: str | None) -> bool:
    return request.url.scheme == "https" or bool(
        state_public_url and state_public_url.startswith("https://")
    )


def set_session_cookie(response: Response, cookie: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, secure=secure, samesite="lax")


def web_viewer(
    request: Request, session: SessionDep, now: NowDep, state: StateDep
) -> WebViewer | None:
    """The signed-in person, or None. Pages are public unless they ask for `SignedIn`."""
    viewer = find_viewer(session, request.cookies.get(COOKIE), now=now)
    request.state.web_viewer = viewer
    return viewer


setattr(web_viewer, AUTHZ_ATTRIBUTE, "public")
ViewerDep = Annotated[WebViewer | None, Depends(web_viewer)]


def signed_in(viewer: ViewerDep) -> WebViewer:
    if viewer is None:
        raise LoginRequired("sign in to see this page")
    return viewer


setattr(signed_in, AUTHZ_ATTRIBUTE, "web-session")
SignedIn = Annotated[WebViewer, Depends(signed_in)]
