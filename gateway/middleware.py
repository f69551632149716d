"""ASGI middleware: request ids, access log, body size limits and content-type checks.

Written as plain ASGI (not BaseHTTPMiddleware) so streaming responses stay streaming and
oversized bodies are refused before they are read whole.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import scrub
from gateway.problems import error_body

access_log = logging.getLogger("tiergate.access")
error_log = logging.getLogger("tiergate.errors")
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _BodyTooLarge(StarletteHTTPException):
    """Raised from `receive`; an HTTPException so body parsers re-raise it untouched."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than the {limit}-byte limit")


async def _send_problem(
    send: Send, scope: Scope, status: int, code: str, title: str, detail: str
) -> None:
    document, media_type = error_body(
        str(scope.get("path", "")),
        status=status,
        code=code,
        title=title,
        detail=detail,
        request_id=scope.get("state", {}).get("request_id"),
    )
    body = json.dumps(document).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Give every request an id (echoed as `X-Request-ID`) and write one access-log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else None
        request_id = request_id or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 500}
        response_started = {"value": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started["value"] = True
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The last line of defence: log the traceback with the request id, answer a
            # bare 500 problem if nothing was sent yet, and never re-raise into the server.
            error_log.exception("unhandled error in request %s", request_id)
            if status_holder["status"] == 500 and not response_started["value"]:
                await _send_problem(
                    send_with_id,
                    scope,
                    500,
                    "internal_error",
                    "Internal error",
                    "An unexpected error occurred; it has been logged.",
                )
        finally:
            if access_log.isEnabledFor(logging.INFO):  # else the line's fields cost for nothing
                _log_access(scope, request_id, status_holder["status"], started)


def _log_access(scope: Scope, request_id: str, status: int, started: float) -> None:
    access_log.info(
        "%s %s %s",
        scope.get("method", "?"),
        scrub(scope.get("path", "")),
        status,
        extra={
            "request_id": request_id,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )


class BodyLimitMiddleware:
    """Refuse bodies over the limit: by Content-Length up front, or while streaming."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_limit: int,
        limits: Iterable[tuple[str, int]] = (),
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        # (path prefix, limit) pairs for routes that take large bodies (uploads).
        self.limits = sorted(limits, key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_problem(
                    send, scope, 400, "bad_request", "Bad request", "invalid Content-Length"
                )
                return
            if int(declared) > limit:
                await _send_problem(
                    send,
                    scope,
                    413,
                    "payload_too_large",
                    "Payload too large",
                    f"the body is larger than the {limit}-byte limit",
                )
                return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await _send_problem(
                    send,
                    scope,
                    413,
                    "payload_too_large",
                    "Payload too large",
                    f"the body is larger than the {limit}-byte limit",
                )


class JsonContentTypeMiddleware:
    """Bodies sent to JSON routes must say they are JSON (415 otherwise)."""

    def __init__(self, app: ASGIApp, *, applies: Callable[[str], bool]) -> None:
        self.app = app
        self.applies = applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") in {"POST", "PUT", "PATCH"}
            and self.applies(scope.get("path", ""))
        ):
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            has_body = (_header(scope, b"content-length") or "0") != "0" or _header(
                scope, b"transfer-encoding"
            )
            if has_body and not (
                content_type == "application/json" or content_type.endswith("+json")
            ):
                await _send_problem(
                    send,
                    scope,
                    415,
                    "unsupported_media_type",
                    "Unsupported media type",
                    f"send the body as application/json (got {content_type or 'no content type'})",
                )
                return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def header_value(scope: dict[str, Any], name: str) -> str | None:
    return _header(scope, name.lower().encode())
