"""The one place where every failure becomes an `application/problem+json` response (RFC 9457)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import DatabaseUnavailable, GatewayError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://tiergate.dev/problems/"

log = logging.getLogger("tiergate.errors")

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    416: ("range_not_satisfiable", "Range not satisfiable"),
    422: ("validation_error", "Validation failed"),
    429: ("rate_limited", "Too many requests"),
    507: ("insufficient_storage", "Insufficient storage"),
}

# Error roots of the pure parts. They carry `code`; a `status` attribute, when present, wins.
_PART_ROOTS = (
    ("release.errors", "ReleaseError"),
    ("licensing.errors", "LicensingError"),
    ("watermark.errors", "WatermarkError"),
)


class Problem(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    if exc.status >= 500:
        log.warning("request failed: %s (%s)", exc.code, exc.message)
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.message,
        extra=exc.extra,
        headers=exc.headers or None,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return problem_response(
            request,
            status=400,
            code="malformed_json",
            title="Malformed JSON body",
            detail="The request body is not valid JSON.",
        )
    cleaned = [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in errors
    ]
    first = cleaned[0] if cleaned else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) if first["loc"] else "request"
    return problem_response(
        request,
        status=422,
        code="validation_error",
        title="Validation failed",
        detail=f"{where}: {first['msg']}",
        extra={"errors": cleaned},
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem_response(
        request,
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # The driver's own message ("database is locked", "connection refused") tells an operator
    # what happened; SQLAlchemy's full text would add the statement and its parameters.
    cause = getattr(exc, "orig", None)
    log.warning("database error: %s: %s", type(exc).__name__, str(cause or "")[:200])
    return await _gateway_error(
        request, DatabaseUnavailable("The database is unreachable; try again shortly.")
    )


async def _part_error(request: Request, exc: Exception) -> JSONResponse:
    """Errors of the pure parts carry a stable `code`; a `status` attribute, when set, wins."""
    status = getattr(exc, "status", None)
    return problem_response(
        request,
        status=status if isinstance(status, int) else 422,
        code=str(getattr(exc, "code", "error")),
        title=type(exc).__name__,
        detail=str(getattr(exc, "message", exc)),
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(DBAPIError, _database_error)
    for module_name, root_name in _PART_ROOTS:
        root = getattr(importlib.import_module(module_name), root_name)
        app.add_exception_handler(root, _part_error)
    # Anything else is caught by RequestContextMiddleware, which answers 500 problem+json
    # with the request id and logs the traceback (never sent to the client).


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the problem+json errors a route can return."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        _, title = _HTTP_CODES.get(status, ("error", "Error"))
        if status == 503:
            title = "Service unavailable"
        if status == 500:
            title = "Internal error"
        out[status] = {
            "model": Problem,
            "description": title,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out
