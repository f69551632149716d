"""HTTP shapes of evaluation runs and evaluation attestations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SamplingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(ge=1, le=4096)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class RunPreregistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    model: str = Field(max_length=200, description="ORG/NAME[@VERSION][:tier]")
    task: dict[str, Any] = Field(
        description="name, version, kind, metric, dataSha256, taskSha256, passCriteria"
    )
    sampling: SamplingIn
    documents: int = Field(ge=1, description="How many documents the run will ask about.")


class RunPublic(BaseModel):
    run_id: str
    model: str
    state: Literal["open", "sealed"]
    preregistration_index: int
    seal_index: int | None
    samples: list[tuple[str, int]] = Field(
        description="(document id, log index) of every logged call of the run, in log order."
    )


class AttestationPublic(BaseModel):
    id: int
    digest: str = Field(description="sha256 of the attestation's DSSE payload (the statement).")
    status: Literal["publisher", "community", "accepted", "rejected", "unverified"]
    role: str = Field(description="Who the attestation says ran it (ranBy.role).")
    task: str
    tier: str
    score: str
    interval: list[str]
    result: str
    run_id: str
    signer_key_id: str | None
    log_index: int
    created_at: datetime


class AttestationDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "reject"]
