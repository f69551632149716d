"""SQLModel tables of the gateway (the `X(table)` rung of the model ladder)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, String
from sqlmodel import Field, SQLModel

from gateway.db.timeutil import utcnow


class Role(StrEnum):
    admin = "admin"
    publisher = "publisher"
    developer = "developer"


def _ts(nullable: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class Org(SQLModel, table=True):
    __tablename__ = "orgs"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    org_id: int | None = Field(default=None, foreign_key="orgs.id", index=True)
    disabled: bool = Field(default=False)
    password_hash: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(sa_column=Column(String(100), nullable=False))
    # The first characters of the token, shown in listings so people can tell tokens apart.
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    # sha256 of the whole token; the token itself is never stored.
    token_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False, index=True))
    scopes: str = Field(sa_column=Column(String(500), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
