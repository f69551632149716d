"""What every page router shares: the router factory that marks requests as pages."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request


def mark_page(request: Request) -> None:
    """Runs first on every page, so errors raised later are rendered as HTML.

    Deliberately carries no authorization rule: each page declares its own.
    """
    request.state.web = True


def page_router() -> APIRouter:
    return APIRouter(include_in_schema=False, dependencies=[Depends(mark_page)])


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in would aid phishing."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target
