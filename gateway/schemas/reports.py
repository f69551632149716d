"""HTTP shapes for flaw and bias reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from gateway.schemas.accounts import WriteModel


class ReportCreate(WriteModel):
    # Lengths of the free text are checked by the service (413 report_too_large), one home.
    model: str = Field(min_length=3, max_length=230, description="ORG/NAME[@VERSION]")
    category: str = Field(max_length=32, description="bias, toxicity, harmful, factuality, ...")
    description: str = Field(description="What is wrong, in the reporter's words.")
    quoted_output: str | None = Field(
        default=None, description="Model output, exactly as received; checked against the log."
    )
    call_id: str | None = Field(default=None, max_length=40, description="The call, if known.")


class ReportStep(WriteModel):
    step: str = Field(
        max_length=16, description="triaged, accepted, rejected, fixed, disclosed or rewarded"
    )
    version: str | None = Field(default=None, max_length=64, description="For `fixed`.")
    note: str | None = Field(default=None, description="Logged as a digest only.")


class ReportPublic(BaseModel):
    id: int
    model: str
    category: str
    description: str
    quoted_output: str | None
    call_id: str | None
    verification: dict[str, Any] = Field(
        description="`status` verified or not_verified, the statement, and for a verified "
        "quote the logged call, its log index and the inclusion proof."
    )
    state: str
    fixed_version: str | None
    rewarded: bool
    public: bool = Field(description="Disclosed, or past its disclosure deadline.")
    disclose_after: datetime
    created_at: datetime
    reporter: str | None
    log_index: int = Field(description="The `report.received` log entry.")
    links: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Yanks and new versions the model's org linked the report to "
        "(`kind`, `version`, `log_index` of the `report.linked` event, `time`).",
    )
    comments: list[dict[str, Any]] = Field(
        default_factory=list,
        description="`id`, `author` (to insiders only), `text`, `time`, `log_index`.",
    )


class ReportLinkCreate(WriteModel):
    kind: str = Field(max_length=16, description="`yank` (a yanked version) or `version`.")
    version: str = Field(min_length=1, max_length=64)


class ReportCommentCreate(WriteModel):
    # The length is the service's rule (413 report_too_large), one home.
    text: str = Field(description="Logged as a digest; shown to whoever may read the report.")


class PublisherPolicyUpdate(WriteModel):
    report_disclosure_days: int | None = Field(
        default=None, description="Days a report stays private (7-365; default 90)."
    )
    auditor_key: str | None = Field(
        default=None,
        max_length=128,
        description="Raw X25519 public key in hex: reasoning traces are sealed to it. "
        "An empty string removes it; leave it out to keep the current one.",
    )


class PublisherPolicyPublic(BaseModel):
    org: str
    report_disclosure_days: int
    auditor_key: str | None
    auditor_key_id: str | None
