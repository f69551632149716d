"""HTTP shapes for download links and the Hugging Face Hub compatible read paths."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from gateway.schemas.accounts import WriteModel


class LinkCreate(WriteModel):
    repo_id: str = Field(min_length=3, max_length=161, description="ORG/NAME")
    version: str | None = Field(
        default=None, max_length=64, description="Default: the latest published version."
    )
    tier: str = Field(default="open", min_length=1, max_length=32)
    path: str = Field(min_length=1, max_length=1024, description="A file of the tier.")
    ttl_seconds: int | None = Field(
        default=None, ge=1, description="Lifetime; capped by the grant and the configured maximum."
    )
    bind_network: bool = Field(
        default=False, description="Only accept the link from the caller's network (/24, /64)."
    )


class LinkPublic(BaseModel):
    url: str = Field(description="Absolute URL; GET/HEAD with Range until it expires.")
    link_id: str
    key_id: str
    repo_id: str
    version: str
    tier: str
    path: str
    sha256: str
    size: int
    byte_budget: int
    expires_at: datetime
    grant_id: int | None
    network: str | None


class SignerKey(BaseModel):
    key_id: str
    key_type: str
    pem: str


class HubSibling(BaseModel):
    rfilename: str
    size: int | None = None
    blobId: str | None = None
    lfs: dict[str, Any] | None = None


class HubModelInfo(BaseModel):
    id: str
    modelId: str
    author: str
    sha: str
    lastModified: datetime | None
    createdAt: datetime | None
    private: bool
    gated: str | bool
    disabled: bool
    tags: list[str]
    library_name: str | None
    pipeline_tag: str | None = None
    siblings: list[HubSibling]
    cardData: dict[str, Any] | None = None
    tiergate: dict[str, Any]


class HubTreeEntry(BaseModel):
    type: str
    path: str
    oid: str
    size: int
    lfs: dict[str, Any] | None = None
