"""The one place where every failure becomes an error response.

Everywhere but the OpenAI-compatible surface (`/v1/...`) that is `application/problem+json`
(RFC 9457) with a stable `code`. Under `/v1/` clients are OpenAI SDKs, which read
`{"error": {"message", "type", "param", "code"}}` and show nothing useful from a problem
document, so the same error is written in OpenAI's shape there, with the same stable `code`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from gateway.errors import (
    HTTP_ERROR_CODE,
    HTTP_FALLBACK_CODES,
    BadRequest,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
    error_code,
    error_roots,
    status_of,
    title_of,
)
from gateway.services.ratelimit import RateLimited
from gateway.streaming import RangeNotSatisfiable

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://tiergate.dev/problems/"

log = logging.getLogger("tiergate.errors")

# OpenAI's `error.type` per status (its SDKs map the status to an exception class; `type`
# is informational). 5xx are all `server_error`, as OpenAI and vLLM answer them.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    416: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
OPENAI_PREFIX = "/v1/"

# HTTP statuses raised by Starlette itself (404 for an unknown path, 405...) answer with the
# code and title of the class of ours that has that status, so each code keeps one meaning.
_STATUS_CLASSES: tuple[type[GatewayError], ...] = (
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    ValidationFailed,
    RateLimited,
    ServiceUnavailable,
    GatewayError,
)
_BY_STATUS = {cls.status: (cls.code, cls.title) for cls in _STATUS_CLASSES}


def http_code(status: int) -> tuple[str, str]:
    """(code, title) of a bare HTTP status, from the registry's classes or its fallbacks."""
    return _BY_STATUS.get(status) or HTTP_FALLBACK_CODES.get(status) or HTTP_ERROR_CODE


class Problem(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None


class OpenAIErrorDetail(BaseModel):
    """OpenAI's error object; `code` is tiergate's stable code, as in problem documents."""

    model_config = ConfigDict(extra="allow")

    message: str
    type: str
    param: str | None = None
    code: str
    request_id: str | None = None


class OpenAIError(BaseModel):
    """The body of every error response under `/v1/`."""

    error: OpenAIErrorDetail


def speaks_openai(path: str) -> bool:
    """Whether clients of ``path`` expect OpenAI's error shape (the `/v1/` surface)."""
    return path.startswith(OPENAI_PREFIX)


def error_body(
    path: str,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request_id: str | None,
    extra: dict[str, Any] | None = None,
    param: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The error document for ``path`` and its media type: OpenAI's shape or problem+json."""
    if speaks_openai(path):
        if param is None and extra and isinstance(extra.get("param"), str):
            param = extra["param"]  # services name the offending field this way
        error: dict[str, Any] = {
            "message": detail,
            "type": _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "error"),
            "param": param,
            "code": code,
            "request_id": request_id,
        }
        if extra:
            error.update({k: v for k, v in extra.items() if k not in error})
        return {"error": error}, "application/json"
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
    return body, PROBLEM_MEDIA_TYPE


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    path = request.url.path if request is not None else ""
    body, media_type = error_body(
        path,
        status=status,
        code=code,
        title=title,
        detail=detail,
        request_id=request_id,
        extra=extra,
        param=param,
    )
    return JSONResponse(body, status_code=status, media_type=media_type, headers=headers)


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
    # OpenAI's `param` names the offending field of the body ("max_tokens"), without "body.".
    fields = [part for part in first["loc"] if part not in ("body", "query", "path", "header")]
    return problem_response(
        request,
        status=422,
        code="validation_error",
        title="Validation failed",
        detail=f"{where}: {first['msg']}",
        extra={"errors": cleaned},
        param=".".join(fields) or None,
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path.

    Starlette's 405 names only the methods of the first route whose path matched, so
    `OPTIONS /api/tokens` answered `Allow: GET` although `POST /api/tokens` exists too.
    """
    methods: set[str] = set()
    probe = {**request.scope, "method": "\x00"}  # no route serves it: matches are PARTIAL
    for ctx in iter_route_contexts(request.app.router.routes):
        route = ctx.route
        route_methods = getattr(route, "methods", None)
        if route_methods and isinstance(route, Route) and route.matches(probe)[0] != Match.NONE:
            methods.update(route_methods)
    return sorted(methods)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = http_code(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    return problem_response(
        request,
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        headers=headers or None,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # The driver's own message ("database is locked", "connection refused") tells an operator
    # what happened; SQLAlchemy's full text would add the statement and its parameters.
    cause = getattr(exc, "orig", None)
    log.warning("database error: %s: %s", type(exc).__name__, str(cause or "")[:200])
    return await _gateway_error(
        request, DatabaseUnavailable("The database is unreachable; try again shortly.")
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value (out of range for its column, say): the request is wrong,
    # not the database; a 503 would invite clients to retry it forever. Edge validation
    # (deps.RowId and the schemas) should stop such values first; this is the net under it.
    cause = getattr(exc, "orig", None)
    log.warning("database refused a value: %s", str(cause or "")[:200])
    return await _gateway_error(
        request, ValidationFailed("A value in the request is out of range for this gateway.")
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # A constraint refused a write that raced another request (two replicas inserting one
    # unique value): the database is fine, the request lost. Services turn the races they
    # expect into specific 409s; this is the net under the ones they do not.
    cause = getattr(exc, "orig", None)
    log.warning("integrity conflict: %s", str(cause or "")[:200])
    return await _gateway_error(
        request,
        Conflict("The change conflicts with one made at the same time; read it again and retry."),
    )


async def _part_error(request: Request, exc: Exception) -> JSONResponse:
    """Errors of the pure parts: code from the class, status and title from the registry."""
    return problem_response(
        request,
        status=status_of(type(exc)),
        code=error_code(exc),
        title=title_of(type(exc)),
        detail=str(getattr(exc, "message", exc)),
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    for root in error_roots():
        if root is not GatewayError:
            app.add_exception_handler(root, _part_error)
    # Anything else is caught by RequestContextMiddleware, which answers 500 problem+json
    # with the request id and logs the traceback (never sent to the client).


def _status_title(status: int) -> str:
    if status == 503:
        return "Service unavailable"
    if status == 500:
        return "Internal error"
    return http_code(status)[1]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the problem+json errors a route can return."""
    return {
        status: {
            "model": Problem,
            "description": _status_title(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def openai_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for routes under `/v1/`, which answer OpenAI's shape."""
    return {
        status: {"model": OpenAIError, "description": _status_title(status)} for status in statuses
    }
