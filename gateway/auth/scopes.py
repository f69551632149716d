"""Scopes a token can carry, and which ones each role gets by default."""

from __future__ import annotations

from gateway.db.models import Role
from gateway.errors import ValidationFailed

# One scope per kind of power; routes declare the one they need.
SCOPES: dict[str, str] = {
    "read": "Read releases, own account, own requests and grants.",
    "publish": "Publish, yank and manage releases of the caller's org.",
    "review": "Review access requests for the caller's org.",
    "access": "Request gated access and download through links.",
    "generate": "Call models through the OpenAI-compatible API.",
    "detect": "Run watermark detection.",
    "log": "Read transparency-log entries the caller may see.",
    "admin": "Manage users, tokens and clients.",
}

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.admin: frozenset(SCOPES),
    Role.publisher: frozenset({"read", "publish", "review", "access", "generate", "detect", "log"}),
    Role.developer: frozenset({"read", "access", "generate", "detect", "log"}),
}


def parse_scopes(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split() if part)


def unknown_scopes(scopes: frozenset[str]) -> list[str]:
    return sorted(scope for scope in scopes if scope not in SCOPES)


class ScopesEmpty(ValidationFailed):
    """An explicit empty scope list: refused everywhere, never read as "all scopes"."""

    code = "scopes_empty"
    title = "No scopes requested"


def require_some(scopes: frozenset[str], what: str) -> None:
    """Refuse an empty scope set the same way on every path that mints a credential."""
    if not scopes:
        raise ScopesEmpty(f"{what} needs at least one scope; omit 'scopes' for the defaults")
