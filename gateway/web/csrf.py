"""CSRF protection for every HTML form: a token derived from a secret the attacker lacks.

Signed in, the secret is the session's ``csrf_secret`` (server-side). Signed out (the sign-in
form itself), it is a random cookie echoed in the form ("double submit"), which stops a
foreign site from signing a victim into the attacker's account. A present ``Origin`` header
must also name this site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Form, Request

from gateway.deps import AUTHZ_ATTRIBUTE
from gateway.errors import Forbidden
from gateway.web.sessions import ViewerDep, WebViewer

ANON_COOKIE = "tiergate_csrf"
FIELD = "csrf_token"


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    title = "Form expired"


def token_for(secret: str) -> str:
    return hmac.new(secret.encode("ascii"), b"tiergate-csrf-v1", hashlib.sha256).hexdigest()


def new_anon_secret() -> str:
    return secrets.token_urlsafe(24)


def form_secret(request: Request, viewer: WebViewer | None) -> str | None:
    if viewer is not None:
        return viewer.csrf_secret
    cookie = request.cookies.get(ANON_COOKIE)
    return cookie if cookie and len(cookie) <= 64 and cookie.isascii() else None


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Browsers send Origin on cross-site POSTs; "null" is only trusted when no other
        # check fails (sandboxed frames are refused by frame-ancestors anyway).
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def require_csrf(
    request: Request, viewer: ViewerDep, csrf_token: Annotated[str, Form(max_length=128)] = ""
) -> None:
    secret = form_secret(request, viewer)
    if (
        secret is None
        or not _same_origin(request)
        or not hmac.compare_digest(token_for(secret).encode(), csrf_token.encode())
    ):
        raise CsrfFailed("this form has expired or did not come from this site; reload the page")


setattr(require_csrf, AUTHZ_ATTRIBUTE, "public")
CsrfChecked = Depends(require_csrf)
