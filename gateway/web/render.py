"""Template rendering: one Jinja2 environment (autoescaped), page context and safe headers."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.web.csrf import ANON_COOKIE, FIELD, form_secret, new_anon_secret, token_for
from gateway.web.sessions import WebViewer

TEMPLATES = Path(__file__).parent / "templates"
# No inline script or style anywhere: the policy can forbid both.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = human_size
    env.filters["when"] = when
    return env


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> HTMLResponse:
    viewer: WebViewer | None = getattr(request.state, "web_viewer", None)
    secret = form_secret(request, viewer)
    new_cookie = None
    if secret is None:
        # First visit without a session: give the sign-in form a double-submit secret.
        secret = new_cookie = new_anon_secret()
    page = {
        "request": request,
        "viewer": viewer.principal if viewer else None,
        "csrf_field": FIELD,
        "csrf_token": token_for(secret),
        "path": request.url.path,
        **(context or {}),
    }
    html = environment().get_template(template).render(page)
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if new_cookie is not None:
        response.set_cookie(
            ANON_COOKIE,
            new_cookie,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response
