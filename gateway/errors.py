"""Errors of the gateway, and the registry of every error code of the project.

Each gateway error maps to one problem+json response with a stable code. The five parts have
their own roots (:class:`GatewayError`, ``ReleaseError``, ``LicensingError``,
``WatermarkError``, ``SafetyError``); :func:`error_roots` is the one marker the drivers catch, and
:func:`error_registry` the one table of codes (unique across the parts, checked by test).

Exception tree (this module's classes; services add subclasses next to their rules)::

    GatewayError                       500 internal_error: root
    +-- BadRequest                     400 bad_request
    |   +-- MalformedJSON              400 malformed_json
    +-- Unauthenticated                401 unauthenticated (missing / garbage token)
    |   +-- TokenExpired               401 token_expired
    |   +-- TokenRevoked               401 token_revoked
    +-- Forbidden                      403 forbidden
    |   +-- InsufficientScope          403 insufficient_scope
    |   +-- GrantRequired              403 grant_required (gated tier, no live grant)
    +-- NotFound                       404 not_found
    +-- Conflict                       409 conflict
    +-- PayloadTooLarge                413 payload_too_large
    +-- UnsupportedMediaType           415 unsupported_media_type
    +-- ValidationFailed               422 validation_error
    +-- ServiceUnavailable             503 service_unavailable
    |   +-- DatabaseUnavailable        503 database_unavailable
    +-- ConfigurationError             500 configuration_error (data dir not writable, ...)
        +-- DuplicateErrorCode         500 duplicate_error_code (two classes share a code)

Subclasses in the services include (issue 19, reports and publisher policy)::

    ValidationFailed  422 disclosure_window_invalid, auditor_key_invalid, report_link_invalid
    ValidationFailed  422 logprobs_invalid (token logprobs pasted into the detector page)
    ValidationFailed  422 log_audit_failed (tiergate audit safety: the log does not verify)
    Conflict          409 report_link_exists

and (issue 20, signed card revisions, ``services.card_revisions``)::

    ValidationFailed  422 card_revision_signature_invalid, card_revision_mismatch,
                          card_revision_attestation_not_endorsed
    Conflict          409 card_revision_stale
    NotFound          404 card_revision_not_found

``docs/errors.md`` lists every code of the project (``python -m gateway.tools.error_codes``).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
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


class GrantRequired(Forbidden):
    """A gated tier needs a live grant: for downloads (Hub clients read ``X-Error-Code``) and
    for generation alike, so one code means one thing."""

    code = "grant_required"
    title = "Gated tier: no active grant"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("X-Error-Code", "GatedRepo")


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


# --- the project's one marker and one registry of codes -------------------------------------

PARTS = ("gateway", "release", "licensing", "watermark", "safety")
"""The packages whose error roots make up the project's errors."""


@functools.cache
def error_roots() -> tuple[type[Exception], ...]:
    """The roots of the five error trees: what "one of tiergate's errors" means, in one place.

    The pure parts may not import ``gateway`` (and licensing and watermark no other part), so
    no shared base class can exist; this tuple stands in for it. Every driver catches it (the
    CLI's one ``except``, the problem handlers). Imported on first use so that ``tiergate
    --help`` does not load numpy through ``watermark``.
    """
    from licensing.errors import LicensingError
    from release.errors import ReleaseError
    from safety.errors import SafetyError
    from watermark.errors import WatermarkError

    return (GatewayError, ReleaseError, LicensingError, WatermarkError, SafetyError)


def is_project_error(exc: BaseException) -> bool:
    """True for errors of the project's own trees (user-facing), False for everything else."""
    return isinstance(exc, error_roots())


def error_code(exc: BaseException) -> str:
    """The stable code of a project error (per instance where the class allows it)."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else "internal_error"


# Statuses of HTTP-level failures that no exception class of ours raises (Starlette answers
# them itself: unknown method, Accept mismatch). Codes of classes are registered by the class.
HTTP_FALLBACK_CODES: Mapping[int, tuple[str, str]] = {
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
}
HTTP_ERROR_CODE = ("http_error", "HTTP error")
"""Code and title of an HTTP status that neither a class nor the fallback table knows."""

# The pure parts know nothing of HTTP; their errors are bad input (422) unless listed here.
# Keyed by code (stable strings); the most specific class's entry wins.
PART_STATUS: Mapping[str, int] = {
    "attestation_too_large": 413,
    "envelope_too_large": 413,
    "watermark_backend_unavailable": 503,
    "safety_check_unavailable": 503,
}
_DEFAULT_PART_STATUS = 422


def status_of(cls: type[BaseException]) -> int:
    """The HTTP status of an error class of any part."""
    if issubclass(cls, GatewayError):
        return cls.status
    for klass in cls.__mro__:
        code = klass.__dict__.get("code")
        if isinstance(code, str) and code in PART_STATUS:
            return PART_STATUS[code]
    return _DEFAULT_PART_STATUS


def title_of(cls: type[BaseException]) -> str:
    """A short human title: the gateway's own, else the part's code in words."""
    if issubclass(cls, GatewayError):
        return cls.title
    code = getattr(cls, "code", None)
    words = code if isinstance(code, str) else cls.__name__
    return words.replace("_", " ").capitalize()


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One entry of the registry: a code, its HTTP status and title, and where it comes from."""

    code: str
    status: int | None  # None: whatever status the server answered (``http_error``)
    title: str
    origin: str  # "module.Class", or "HTTP 405" for the fallback table


class DuplicateErrorCode(ConfigurationError):
    """Two definitions give one code different meanings; codes must identify one error."""

    code = "duplicate_error_code"
    title = "Duplicate error code"


def iter_error_classes(
    roots: Iterable[type[BaseException]] | None = None,
) -> Iterator[type[BaseException]]:
    """Every class under the roots (those imported so far), each once, roots first."""
    seen: set[type[BaseException]] = set()
    stack = list(roots if roots is not None else error_roots())[::-1]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        stack.extend(reversed(cls.__subclasses__()))


# Alembic scripts run only inside alembic's own context, and `__main__` modules run programs.
_NOT_IMPORTABLE = ("gateway.db.migrations",)


def import_project_modules(parts: Iterable[str] = PARTS) -> list[ModuleType]:
    """Import every module of the parts, so that walking subclasses sees every error class.

    A module whose optional third-party dependency is not installed is skipped; a missing
    module of our own is a bug and propagates.
    """
    modules: list[ModuleType] = []
    for part in parts:
        package = importlib.import_module(part)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{part}."):
            if info.name.startswith(_NOT_IMPORTABLE) or info.name.endswith(".__main__"):
                continue
            try:
                modules.append(importlib.import_module(info.name))
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".", 1)[0] in PARTS:
                    raise
    return modules


def error_definitions() -> list[ErrorCode]:
    """Every definition of a code: each class that sets ``code`` itself, and the HTTP fallbacks."""
    out = [
        ErrorCode(
            code=cls.__dict__["code"],
            status=status_of(cls),
            title=title_of(cls),
            origin=f"{cls.__module__}.{cls.__qualname__}",
        )
        for cls in iter_error_classes()
        if isinstance(cls.__dict__.get("code"), str)
    ]
    for status, (code, title) in sorted(HTTP_FALLBACK_CODES.items()):
        out.append(ErrorCode(code, status, title, f"HTTP {status}"))
    out.append(ErrorCode(HTTP_ERROR_CODE[0], None, HTTP_ERROR_CODE[1], "HTTP other"))
    return out


def error_registry(*, import_all: bool = True) -> dict[str, ErrorCode]:
    """The one table of the project's error codes, by code.

    With ``import_all`` every module of the four parts is imported first, so classes defined
    next to their rules (in services, engines, web) are included. Raises
    :class:`DuplicateErrorCode` when two definitions share a code.
    """
    if import_all:
        import_project_modules()
    registry: dict[str, ErrorCode] = {}
    for entry in error_definitions():
        first = registry.setdefault(entry.code, entry)
        if first is not entry:
            raise DuplicateErrorCode(
                f"error code {entry.code!r} is defined twice: by {first.origin} "
                f"({first.title!r}) and by {entry.origin} ({entry.title!r})"
            )
    return dict(sorted(registry.items()))
