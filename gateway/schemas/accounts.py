"""HTTP shapes for accounts and tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.db.models import ApiToken, Role


class WriteModel(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class WhoAmI(BaseModel):
    username: str
    role: Role
    org: str | None
    scopes: list[str]
    auth_method: str
    token_id: int | None


class TokenCreate(WriteModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] | None = Field(default=None, description="Defaults to the role's scopes.")
    ttl_days: int | None = Field(default=90, ge=1, le=3650)


class TokenPublic(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The token itself. Shown once: store it now.")


class UserCreate(WriteModel):
    username: str = Field(min_length=1, max_length=63)
    role: Role
    org: str | None = None


class UserPublic(BaseModel):
    id: int
    username: str
    role: Role
    org: str | None
    disabled: bool
    created_at: datetime


class UserCreated(UserPublic):
    token: str = Field(description="An API token for the new user. Shown once.")


def token_public(token: ApiToken) -> TokenPublic:
    """The public view of a stored token (never its secret or hash)."""
    assert token.id is not None
    return TokenPublic(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        scopes=token.scopes.split(),
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        last_used_at=token.last_used_at,
    )
