"""Who is calling: the authenticated identity every route receives."""

from __future__ import annotations

from dataclasses import dataclass

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
    # "token" for personal API tokens; later also "oauth" for client-credentials JWTs.
    method: str = "token"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin
