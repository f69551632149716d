"""HTTP shapes for keys, releases and uploads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from gateway.schemas.accounts import WriteModel


class KeyRegister(WriteModel):
    pem: str = Field(
        max_length=16384, description="PEM SubjectPublicKeyInfo (ECDSA P-256 or Ed25519)."
    )
    name: str = Field(default="default", min_length=1, max_length=100)


class KeyPublic(BaseModel):
    key_id: str
    key_type: str
    name: str
    org: str | None
    created_at: datetime
    revoked_at: datetime | None


class ReleaseCreate(WriteModel):
    statement: dict[str, Any] = Field(description="The signed release statement (DSSE envelope).")
    bundles: dict[str, dict[str, Any]] = Field(
        description="Each tier's model_signing bundle (the content of its model.sig)."
    )
    model_card: str = Field(max_length=1 << 20)
    terms: str | None = Field(default=None, max_length=256 << 10)


class BlobRef(BaseModel):
    sha256: str
    size: int


class FilePublic(BaseModel):
    path: str
    sha256: str
    size: int


class TierPublic(BaseModel):
    name: str
    gated: bool
    manifest_digest: str
    total_size: int
    files: list[FilePublic]


class ReleaseSummary(BaseModel):
    repo_id: str
    version: str
    status: str
    license: str | None
    gated_tiers: list[str]
    published_at: datetime | None
    yank_reason: str | None


class ReleasePublic(ReleaseSummary):
    statement_digest: str
    signer_key_id: str
    terms_digest: str | None
    approval: dict[str, Any]
    model_card: str
    tiers: list[TierPublic]
    created_at: datetime
    yanked_at: datetime | None
    statement: dict[str, Any]


class ReleaseCreated(BaseModel):
    repo_id: str
    version: str
    status: str
    created: bool
    missing: list[BlobRef]


class YankRequest(WriteModel):
    reason: str = Field(min_length=1, max_length=2000)


class UploadStatus(BaseModel):
    sha256: str
    size: int
    offset: int
    complete: bool


class CardRevisionCreate(WriteModel):
    statement: dict[str, Any] = Field(
        description="The signed card revision statement (DSSE envelope, card-revision/v1)."
    )
    card: str = Field(max_length=1 << 20, description="The revised README.md, UTF-8.")
    bundles: dict[str, dict[str, Any]] = Field(
        description="Each tier's model.sig re-signed over the revised README.md."
    )


class CardRevisionPublic(BaseModel):
    revision: int
    digest: str = Field(description="sha256 of the revision statement (DSSE payload).")
    card_sha256: str
    attestations: list[str] = Field(description="Digests of the attestations the card shows.")
    signer_key_id: str
    log_index: int = Field(description="The `release.card_revised` log entry.")
    created_at: datetime
    statement: dict[str, Any] = Field(description="The signed statement (DSSE envelope).")
    commits: dict[str, str] = Field(description="Tier -> Hub commit serving this revision.")
    card: str | None = Field(default=None, description="The README.md (single revision reads).")
