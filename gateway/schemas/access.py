"""HTTP shapes for gated access: terms, attestation submission, requests, grants, policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from gateway.schemas.accounts import WriteModel


class TermsPublic(BaseModel):
    repo_id: str
    version: str
    tier: str
    release_digest: str = Field(description="Subject digest a usage attestation must name.")
    terms_digest: str | None
    terms: str | None
    license: str | None
    fields: list[dict[str, Any]] = Field(description="What the publisher asks requesters.")
    approval: str = Field(description="auto or manual")
    grant_lifetime_seconds: int


class AccessRequestCreate(WriteModel):
    repo_id: str = Field(max_length=200)
    version: str = Field(max_length=64)
    tier: str = Field(default="optimized", max_length=32)
    # A string, not an object: the envelope is stored byte for byte as it was signed and sent.
    attestation: str = Field(description="The signed usage attestation (DSSE envelope JSON).")


class AccessRequestPublic(BaseModel):
    id: int
    repo_id: str
    version: str
    tier: str
    requester: str
    status: str
    reason: str | None
    fields: dict[str, str]
    key_id: str
    policy_version: int
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    grant_id: int | None
    attestation_digest: str


class AccessRequestDetail(AccessRequestPublic):
    attestation: str = Field(description="The envelope exactly as submitted, for re-verification.")


class GrantPublic(BaseModel):
    id: int
    repo_id: str
    version: str
    tier: str
    grantee: str
    request_id: int
    policy_version: int
    decision: str
    decided_by: str | None
    state: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None


class ReasonBody(WriteModel):
    reason: str = Field(min_length=1, max_length=2000)


class PolicyUpdate(WriteModel):
    mode: str = Field(pattern="^(auto|manual)$")
    grant_lifetime_seconds: int = Field(ge=60, le=10 * 366 * 24 * 3600)
    allow: dict[str, list[str]] = Field(default_factory=dict)
    deny: dict[str, list[str]] = Field(default_factory=dict)
    max_grants: int | None = Field(default=None, ge=0)


class PolicyPublic(BaseModel):
    repo_id: str
    version: str
    tier: str
    policy_version: int
    policy: dict[str, Any]
    created_at: datetime
    created_by: str | None


class ClientCreate(WriteModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] | None = Field(default=None, description="Defaults to the owner's scopes.")
    user: str | None = Field(default=None, description="Owner (admins only; default: caller).")


class ClientPublic(BaseModel):
    client_id: str
    name: str
    owner: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ClientCreated(ClientPublic):
    client_secret: str = Field(description="Shown once: store it now.")
