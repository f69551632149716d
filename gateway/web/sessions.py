"""Browser sessions as the web pages see them: the cookie, and who is signed in.

The rules (session rows, sign-in, its rate limit and log entry) live in
:mod:`gateway.services.web_sessions`; this module moves the cookie and exposes the viewer to
pages as FastAPI dependencies. The cookie is HttpOnly, SameSite=Lax, and Secure over TLS.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from gateway.deps import AUTHZ_ATTRIBUTE, NowDep, SessionDep, StateDep
from gateway.errors import Unauthenticated
from gateway.services.web_sessions import (
    SESSION_LIFETIME,
    WebViewer,
    end_session,
    find_viewer,
    principal_of,
    sessions_of,
    start_session,
)

__all__ = [
    "COOKIE",
    "LoginRequired",
    "SignedIn",
    "ViewerDep",
    "WebViewer",
    "clear_session_cookie",
    "end_session",
    "find_viewer",
    "is_secure",
    "principal_of",
    "sessions_of",
    "set_session_cookie",
    "start_session",
]

COOKIE = "tiergate_session"


class LoginRequired(Unauthenticated):
    """A page needs a signed-in account; the web error handler turns it into a redirect."""

    code = "login_required"
    title = "Sign in required"


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
