"""The tables of accountability records: generation calls, Content Credentials, reports,
evaluations, card revisions, publisher policies and sealed reasoning."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from gateway.db.models.core import _ts
from gateway.db.timeutil import utcnow


class GenerationCall(SQLModel, table=True):
    """One generated choice: the call tag (payload) it carries and the log entry of its call."""

    __tablename__ = "generation_calls"
    __table_args__ = (
        UniqueConstraint("call_id", "choice_index", name="uq_generation_choice"),
        Index("ix_generation_calls_key_payload", "key_id", "payload"),
        Index("ix_generation_calls_text_sha256", "text_sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(sa_column=Column(String(40), nullable=False, index=True))
    choice_index: int = Field(nullable=False)
    key_id: str = Field(sa_column=Column(String(16), nullable=False))
    payload: int = Field(sa_column=Column(BigInteger, nullable=False))
    log_index: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    user_id: int = Field(foreign_key="users.id", index=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    # The choice's output digest as logged ("sha256:<hex>", the entry's outputs[i].sha256),
    # so a quoted output is found by index (flaw reports); None only for a call logged
    # without outputs (none so far).
    text_sha256: str | None = Field(default=None, sa_column=Column(String(71), nullable=True))


class ContentCredential(SQLModel, table=True):
    """The signed C2PA manifest store of one generated choice (its hard binding needs the
    text, which the gateway does not keep, so the signed bytes are kept instead)."""

    __tablename__ = "content_credentials"
    __table_args__ = (
        UniqueConstraint("call_id", "choice_index", name="uq_content_credential_choice"),
        Index("ix_content_credentials_key_payload", "key_id", "payload"),
    )

    manifest_id: str = Field(sa_column=Column(String(64), primary_key=True))
    call_id: str = Field(sa_column=Column(String(40), nullable=False))
    choice_index: int = Field(nullable=False)
    key_id: str = Field(sa_column=Column(String(16), nullable=False))
    payload: int = Field(sa_column=Column(BigInteger, nullable=False))
    log_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    text_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    store: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class FlawReport(SQLModel, table=True):
    """A flaw or bias report about a model; its lifecycle steps are log events, and the
    quoted output's verification against the log is kept as issued."""

    __tablename__ = "flaw_reports"

    id: int | None = Field(default=None, primary_key=True)
    repo_id: str = Field(sa_column=Column(String(161), nullable=False, index=True))
    version: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    org_id: int = Field(foreign_key="orgs.id", index=True)
    reporter_id: int = Field(foreign_key="users.id", index=True)
    category: str = Field(sa_column=Column(String(32), nullable=False))
    description: str = Field(sa_column=Column(Text, nullable=False))
    quoted_output: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    call_id: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    verification: str = Field(sa_column=Column(Text, nullable=False))  # JSON, as issued
    state: str = Field(sa_column=Column(String(16), nullable=False))
    fixed_version: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    rewarded: bool = Field(default=False, nullable=False)
    log_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    disclose_after: datetime = Field(sa_column=_ts())
    disclosed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class EvaluationRun(SQLModel, table=True):
    """A pre-registered evaluation run: its bar was logged before its first sample; sealing
    logs the list of its calls once (state ``open`` -> ``sealed``, one conditional write)."""

    __tablename__ = "evaluation_runs"

    run_id: str = Field(sa_column=Column(String(64), primary_key=True))
    release_id: int = Field(foreign_key="releases.id", index=True)
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    model: str = Field(sa_column=Column(String(300), nullable=False))  # ORG/NAME@VERSION:tier
    user_id: int = Field(foreign_key="users.id", index=True)
    preregistration_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    seal_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    state: str = Field(sa_column=Column(String(16), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class EvaluationAttestation(SQLModel, table=True):
    """A signed evaluation attestation stored beside its release (the model is not re-signed).

    ``status``: ``publisher`` (signed by a key of the release's org), ``community`` (a third
    party's, verified by its submitter's registered key, until the publisher decides),
    ``accepted``/``rejected`` (the publisher's logged decision), or ``unverified`` (no
    registered key verifies it: shown, never as anyone's)."""

    __tablename__ = "evaluation_attestations"
    __table_args__ = (UniqueConstraint("digest", name="uq_evaluation_attestation_digest"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    submitter_id: int = Field(foreign_key="users.id", index=True)
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signer_key_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    task: str = Field(sa_column=Column(String(160), nullable=False))
    tier: str = Field(sa_column=Column(String(32), nullable=False))
    score: str = Field(sa_column=Column(String(16), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    log_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class CardRevisionRecord(SQLModel, table=True):
    """A publisher-signed card revision of a release (``card-revision/v1``): the re-rendered
    ``README.md``, its signed statement and each tier's new ``model.sig``. The release's own
    signed files never change; Hub branches serve the latest revision, version tags the
    original."""

    __tablename__ = "card_revisions"
    __table_args__ = (UniqueConstraint("release_id", "revision", name="uq_card_revision"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    revision: int = Field(nullable=False)
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    # The DSSE envelope of the card revision statement, verbatim (canonical JSON).
    envelope: str = Field(sa_column=Column(Text, nullable=False))
    card: str = Field(sa_column=Column(Text, nullable=False))
    card_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    # JSON object: tier -> that tier's revised model_signing bundle (canonical JSON text).
    bundles: str = Field(sa_column=Column(Text, nullable=False))
    signer_key_id: str = Field(sa_column=Column(String(64), nullable=False))
    created_by: int = Field(foreign_key="users.id")
    log_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class PublisherPolicy(SQLModel, table=True):
    """An org's choices as a publisher that are not part of any one release: how long its
    reports stay private, and the auditor key its models' reasoning traces are sealed to."""

    __tablename__ = "publisher_policies"

    org_id: int = Field(foreign_key="orgs.id", primary_key=True)
    report_disclosure_days: int = Field(nullable=False)
    # Raw X25519 public key, hex; None keeps no trace (only its digest is logged).
    auditor_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    auditor_key_id: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class ReportLink(SQLModel, table=True):
    """A report linked by the model's org to a yank or to a new version (a logged event)."""

    __tablename__ = "report_links"
    __table_args__ = (UniqueConstraint("report_id", "kind", "version", name="uq_report_link"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="flaw_reports.id", index=True)
    kind: str = Field(sa_column=Column(String(16), nullable=False))  # "yank" or "version"
    version: str = Field(sa_column=Column(String(64), nullable=False))
    log_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class ReportComment(SQLModel, table=True):
    """A comment on a report (Hub discussion comments); logged by digest, shown like the report."""

    __tablename__ = "report_comments"

    id: int | None = Field(default=None, primary_key=True)
    report_id: int = Field(foreign_key="flaw_reports.id", index=True)
    author_id: int = Field(foreign_key="users.id")
    text: str = Field(sa_column=Column(Text, nullable=False))
    log_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class SealedReasoning(SQLModel, table=True):
    """A choice's reasoning trace sealed to the publisher's auditor key (HPKE, RFC 9180); the
    gateway cannot read it back. The call's log entry holds the sealed bytes' digest."""

    __tablename__ = "sealed_reasoning"
    __table_args__ = (UniqueConstraint("call_id", "choice_index", name="uq_sealed_choice"),)

    id: int | None = Field(default=None, primary_key=True)
    call_id: str = Field(sa_column=Column(String(40), nullable=False, index=True))
    choice_index: int = Field(nullable=False)
    org_id: int = Field(foreign_key="orgs.id", index=True)
    log_index: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    key_id: str = Field(sa_column=Column(String(16), nullable=False))
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
