"""Sign in / out, and the account page: API tokens (created, listed, revoked) and public keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from gateway.auth.passwords import MAX_PASSWORD
from gateway.auth.scopes import ROLE_SCOPES, SCOPES
from gateway.db.models import User
from gateway.db.timeutil import as_utc
from gateway.deps import NowDep, SessionDep, StateDep
from gateway.errors import GatewayError
from gateway.services import accounts, keys, web_sessions
from gateway.web._oidc_config import configured
from gateway.web.common import page_router, safe_next
from gateway.web.csrf import CsrfChecked
from gateway.web.render import render
from gateway.web.sessions import (
    COOKIE,
    SignedIn,
    ViewerDep,
    clear_session_cookie,
    end_session,
    is_secure,
    set_session_cookie,
)

router = page_router()
_FAILED = "Unknown username or wrong password."


def _login_context(request: Request, next: str) -> dict[str, object]:
    provider = configured(request)
    return {
        "title": "Sign in",
        "next": safe_next(next),
        "oidc": provider.label if provider else None,
    }


@router.get("/login")
def login_form(request: Request, viewer: ViewerDep, next: str = "/") -> Response:
    if viewer is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", _login_context(request, next))


@router.post("/login", dependencies=[CsrfChecked])
def login(
    request: Request,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=MAX_PASSWORD)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    name = username.strip().lower()
    address = request.client.host if request.client else "unknown"
    web_sessions.limit_sign_ins(
        state.engine,
        name,
        address,
        window_seconds=state.settings.rate_limit_window_seconds,
        now=now,
    )
    cookie = web_sessions.sign_in_with_password(session, name, password, now=now)
    if cookie is None:
        context = {
            "title": "Sign in",
            "next": safe_next(next),
            "error": _FAILED,
            "username": username,
        }
        return render(request, "login.html", context, status=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, cookie, secure=is_secure(request, state.settings.public_url))
    return response


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, viewer: ViewerDep, session: SessionDep, state: StateDep) -> Response:
    end_session(session, request.cookies.get(COOKIE))
    response = RedirectResponse("/", status_code=303)
    clear_session_cookie(response, secure=is_secure(request, state.settings.public_url))
    return response


def _account_page(
    request: Request,
    viewer: SignedIn,
    session: SessionDep,
    now: NowDep,
    *,
    status: int = 200,
    **extra: object,
) -> Response:
    principal = viewer.principal
    tokens = [
        {
            "row": t,
            "state": "revoked"
            if t.revoked_at is not None
            else "expired"
            if t.expires_at is not None and as_utc(t.expires_at) <= now
            else "active",
        }
        for t in accounts.list_tokens(session, principal.user_id)
    ]
    context: dict[str, object] = {
        "title": "Tokens and keys",
        "tokens": tokens,
        "keys": keys.list_keys(session, principal),
        "scopes": [(s, SCOPES[s]) for s in sorted(ROLE_SCOPES[principal.role])],
        **extra,
    }
    return render(request, "account.html", context, status=status)


@router.get("/account")
def account(request: Request, viewer: SignedIn, session: SessionDep, now: NowDep) -> Response:
    return _account_page(request, viewer, session, now)


@router.post("/account/tokens", dependencies=[CsrfChecked])
def create_token(
    request: Request,
    viewer: SignedIn,
    session: SessionDep,
    now: NowDep,
    name: Annotated[str, Form(max_length=100)],
    ttl_days: Annotated[int, Form(ge=1, le=accounts.MAX_TOKEN_TTL_DAYS)] = 90,
    scope: Annotated[list[str] | None, Form()] = None,
) -> Response:
    user = session.get(User, viewer.principal.user_id)
    assert user is not None
    try:
        issued = accounts.issue_token(
            session,
            user,
            name=name.strip(),
            now=now,
            scopes=frozenset(scope) if scope else None,
            ttl_days=ttl_days,
        )
    except GatewayError as exc:
        return _account_page(request, viewer, session, now, error=exc.message, status=exc.status)
    # The plaintext is rendered into this one response and never stored or shown again.
    return _account_page(request, viewer, session, now, new_token=issued.plaintext)


@router.post("/account/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
def revoke_token(token_id: int, viewer: SignedIn, session: SessionDep, now: NowDep) -> Response:
    accounts.revoke_token(session, token_id, now=now, owner_id=viewer.principal.user_id)
    return RedirectResponse("/account?done=token-revoked", status_code=303)


@router.post("/account/keys", dependencies=[CsrfChecked])
def register_key(
    request: Request,
    viewer: SignedIn,
    session: SessionDep,
    now: NowDep,
    pem: Annotated[str, Form(max_length=16384)],
    name: Annotated[str, Form(max_length=100)] = "web",
) -> Response:
    try:
        keys.register_key(session, viewer.principal, pem=pem, name=name.strip() or "web", now=now)
    except GatewayError as exc:
        return _account_page(request, viewer, session, now, error=exc.message, status=exc.status)
    return RedirectResponse("/account?done=key-registered", status_code=303)


@router.post("/account/keys/{key_id}/revoke", dependencies=[CsrfChecked])
def revoke_key(key_id: str, viewer: SignedIn, session: SessionDep, now: NowDep) -> Response:
    keys.revoke_key(session, viewer.principal, key_id, now=now)
    return RedirectResponse("/account?done=key-revoked", status_code=303)
