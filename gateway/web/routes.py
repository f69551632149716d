"""Wiring of the web interface: page routers, static files, HTML error pages.

`install_web(app)` mounts the static files, includes every page router, and makes errors
raised while serving a page come back as HTML (or a sign-in redirect) instead of JSON.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from gateway.errors import GatewayError
from gateway.web import access, auth, catalog, detect, logview, oidc, reports, review
from gateway.web.render import render
from gateway.web.sessions import LoginRequired

__all__ = ["install_web"]

STATIC = Path(__file__).parent / "static"


def _is_page(request: Request) -> bool:
    return bool(getattr(request.state, "web", False))


async def _delegate(handler: Callable[..., Any], request: Request, exc: Exception) -> Response:
    """Non-page requests keep the problem+json answer the API promises."""
    result = handler(request, exc)
    response: Response = await result if inspect.isawaitable(result) else result
    return response


def install_web(app: FastAPI) -> None:
    # Validated now, so a bad OpenID Connect setting stops start-up, not a sign-in.
    app.state.web_oidc = oidc.oidc_config(app.state.gateway.settings)
    for module in (auth, oidc, catalog, access, review, detect, logview, reports):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    json_error = app.exception_handlers[GatewayError]
    json_invalid = app.exception_handlers[RequestValidationError]

    async def page_error(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            return await _delegate(json_error, request, exc)
        if isinstance(exc, LoginRequired):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        assert isinstance(exc, GatewayError)
        return render(
            request,
            "error.html",
            {"title": exc.title, "detail": exc.message, "status": exc.status},
            status=exc.status,
        )

    async def page_invalid(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            return await _delegate(json_invalid, request, exc)
        return render(
            request,
            "error.html",
            {
                "title": "Check the form",
                "detail": "Some fields are missing or invalid.",
                "status": 422,
            },
            status=422,
        )

    app.add_exception_handler(GatewayError, page_error)
    app.add_exception_handler(RequestValidationError, page_invalid)
