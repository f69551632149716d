"""Errors of the gateway, each mapped to one problem+json response with a stable code.

Exception tree::

    GatewayError                       root (500 unless a subclass says otherwise)
    +-- BadRequest                     400 bad_request
    |   +-- MalformedJSON              400 malformed_json
    +-- Unauthenticated                401 unauthenticated (missing / garbage token)
    |   +-- TokenExpired               401 token_expired
    |   +-- TokenRevoked               401 token_revoked
    +-- Forbidden                      403 forbidden
    |   +-- InsufficientScope          403 insufficient_scope
    +-- NotFound                       404 not_found
    +-- Conflict                       409 conflict
    +-- PayloadTooLarge                413 payload_too_large
    +-- UnsupportedMediaType           415 unsupported_media_type
    +-- ValidationFailed               422 validation_error
    +-- ServiceUnavailable             503 service_unavailable
    |   +-- DatabaseUnavailable        503 database_unavailable
    +-- ConfigurationError             startup problems (data dir not writable, ...)
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """Root of every error raised by :mod:`gateway`."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class BadRequest(GatewayError):
    code = "bad_request"
    status = 400
    title = "Bad request"


class MalformedJSON(BadRequest):
    code = "malformed_json"
    title = "Malformed JSON body"


class Unauthenticated(GatewayError):
    code = "unauthenticated"
    status = 401
    title = "Authentication required"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="tiergate"')


class TokenExpired(Unauthenticated):
    code = "token_expired"
    title = "Token expired"


class TokenRevoked(Unauthenticated):
    code = "token_revoked"
    title = "Token revoked"


class Forbidden(GatewayError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "Insufficient scope"


class NotFound(GatewayError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(GatewayError):
    code = "conflict"
    status = 409
    title = "Conflict"


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(GatewayError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class ValidationFailed(GatewayError):
    code = "validation_error"
    status = 422
    title = "Validation failed"


class ServiceUnavailable(GatewayError):
    code = "service_unavailable"
    status = 503
    title = "Service unavailable"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", "2")


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    title = "Database unavailable"


class ConfigurationError(GatewayError):
    code = "configuration_error"
    title = "Configuration error"
