"""Who is calling: the authenticated identity every route receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.db.models import Role


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: Role
    org_id: int | None
    org: str | None
    scopes: frozenset[str]
    token_id: int | None = None
    # "token" for personal API tokens, "oauth" for client-credentials JWTs, "web" for pages.
    method: str = "token"
    # The presented credential itself, so whatever it mints can be bound to it: the OAuth
    # client and access-token id (``method == "oauth"``), and when the credential expires.
    client_id: str | None = None
    jti: str | None = None
    expires_at: datetime | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin
