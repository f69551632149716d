"""Evaluation attestations beside a release: submit, list, and the publisher's decision.

An attestation accumulates beside the release it names (its subject is the release statement
digest); the model is never re-signed. Who signed it decides how it is shown, never what it
claims: a key of the release's org makes it ``publisher``; a key the submitter registered
makes it ``community`` until the publisher accepts or rejects it (each step a log event, like
a pull request); no registered key makes it ``unverified``, shown but never as anyone's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.db.engine import begin_write
from gateway.db.models import EvaluationAttestation, PublicKeyRecord, Release, Role
from gateway.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from gateway.ledger.events import Actor, record_event
from gateway.services import ratelimit, releases
from licensing.keys import PublicKey
from release.aibom import EvaluationResult
from release.errors import EvalAttestationInvalidError
from release.evals.attestation import EvalAttestation, open_eval_attestation
from release.evals.compare import AttestedScore

__all__ = [
    "MAX_ATTESTATION_BYTES",
    "AttestationView",
    "EvaluationAttestationInvalid",
    "EvaluationAttestationNotFound",
    "EvaluationDecisionInvalid",
    "SubmissionLimits",
    "attestation_envelope",
    "attested_scores",
    "bom_evaluations",
    "decide_attestation",
    "endorsed_attestations",
    "hub_files",
    "list_attestations",
    "submit_attestation",
]

MAX_ATTESTATION_BYTES = 8 * 1024 * 1024
DECISIONS = ("accept", "reject")


class EvaluationAttestationInvalid(ValidationFailed):
    """The attestation is malformed or names another release."""

    code = "evaluation_attestation_invalid"
    title = "Invalid evaluation attestation"


class EvaluationAttestationNotFound(NotFound):
    code = "evaluation_attestation_not_found"
    title = "No such evaluation attestation"


class EvaluationDecisionInvalid(Conflict):
    """Only a community attestation is accepted or rejected, once."""

    code = "evaluation_decision_invalid"
    title = "Evaluation attestation cannot be decided"


@dataclass(frozen=True, slots=True)
class AttestationView:
    id: int
    digest: str
    status: str
    role: str
    task: str
    tier: str
    score: str
    interval: list[str]
    result: str
    run_id: str
    signer_key_id: str | None
    log_index: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SubmissionLimits:
    """How many attestations one account and one client address may submit per window
    (Settings.rate_limit_eval_attestations_*). Each one may be MAX_ATTESTATION_BYTES that are
    parsed, verified against every registered key of the org and the submitter, and stored."""

    per_account: int = 30
    per_address: int = 90
    window_seconds: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> SubmissionLimits:
        return cls(
            per_account=settings.rate_limit_eval_attestations_per_account,
            per_address=settings.rate_limit_eval_attestations_per_address,
            window_seconds=settings.rate_limit_eval_attestations_window_seconds,
        )


def _keys(session: Session, *conditions: Any) -> list[PublicKey]:
    rows = session.exec(
        select(PublicKeyRecord).where(col(PublicKeyRecord.revoked_at).is_(None), *conditions)
    )
    return [PublicKey.from_pem(r.pem.encode("ascii")) for r in rows]


def _classify(
    session: Session, envelope: bytes, release: Release, submitter: Principal
) -> tuple[EvalAttestation, str]:
    """The attestation, verified by the first key that can, and the status that key earns."""
    org_keys = _keys(session, PublicKeyRecord.org_id == release.org_id)
    own_keys = _keys(session, PublicKeyRecord.user_id == submitter.user_id)
    for keys, status in ((org_keys, "publisher"), (own_keys, "community")):
        if not keys:
            continue
        try:
            return open_eval_attestation(envelope, keys), status
        except EvalAttestationInvalidError:
            continue
    try:
        return open_eval_attestation(envelope, None), "unverified"
    except EvalAttestationInvalidError as exc:
        raise EvaluationAttestationInvalid(exc.message) from None


def _view(row: EvaluationAttestation) -> AttestationView:
    attestation = open_eval_attestation(row.envelope, None)
    predicate = attestation.predicate
    interval = predicate["score"]["interval"]
    assert row.id is not None
    return AttestationView(
        id=row.id,
        digest=row.digest,
        status=row.status,
        role=row.role,
        task=row.task,
        tier=row.tier,
        score=row.score,
        interval=[str(interval["lower"]), str(interval["upper"])],
        result=str(predicate.get("result")),
        run_id=str(predicate.get("runId")),
        signer_key_id=row.signer_key_id,
        log_index=row.log_index,
        created_at=row.created_at,
    )


def submit_attestation(
    session: Session,
    principal: Principal,
    repo_id: str,
    version: str,
    envelope: bytes,
    now: datetime,
    *,
    limits: SubmissionLimits,
    client_address: str,
) -> AttestationView:
    """Store a signed attestation beside ``repo_id@version`` and log ``evaluation.attested``.

    Charged to the account's and the address's budgets before anything else, refused and
    oversized submissions included: a flood of large envelopes costs its sender the budget,
    not the gateway a parse and a signature check per key."""
    ratelimit.hit_in(
        session,
        ratelimit.evaluation_attestation_limits(
            principal.user_id,
            client_address,
            per_account=limits.per_account,
            per_address=limits.per_address,
            window_seconds=limits.window_seconds,
        ),
        now=now,
    )
    if len(envelope) > MAX_ATTESTATION_BYTES:
        raise PayloadTooLarge(f"an attestation is at most {MAX_ATTESTATION_BYTES} bytes")
    release = releases.find_release(session, repo_id, version, viewer=principal)
    attestation, status = _classify(session, envelope, release, principal)
    if attestation.release_digest != release.statement_digest:
        raise EvaluationAttestationInvalid(
            f"the attestation's subject is not the statement of {repo_id}@{version}"
        )
    predicate = attestation.predicate
    try:
        task = f"{predicate['task']['name']}@{predicate['task']['version']}"[:160]
        tier = str(predicate["model"]["tier"])[:32]
        score = str(predicate["score"]["value"])[:16]
        role = str(predicate["ranBy"]["role"])[:16]
        predicate["score"]["interval"]["lower"]
    except (KeyError, TypeError):
        raise EvaluationAttestationInvalid(
            "the predicate lacks task, model, score or ranBy"
        ) from None
    digest = hashlib.sha256(attestation.envelope.payload).hexdigest()
    begin_write(session)
    if session.exec(
        select(EvaluationAttestation).where(EvaluationAttestation.digest == digest)
    ).first():
        raise Conflict(f"attestation {digest[:16]} is already stored")
    signer = attestation.signer.key_id if attestation.signer is not None else None
    assert release.id is not None
    index = record_event(
        session,
        action="evaluation.attested",
        actor=Actor.of(principal),
        resource=f"release:{repo_id}@{release.version}",
        now=now,
        org_id=release.org_id,
        fields={
            "attestation_sha256": digest,
            "release_digest": release.statement_digest,
            "task": task,
            "tier": tier,
            "score": score,
            "status": status,
            "signer_key_id": signer,
        },
    )
    row = EvaluationAttestation(
        release_id=release.id,
        submitter_id=principal.user_id,
        digest=digest,
        envelope=attestation.envelope.to_json(),
        signer_key_id=signer,
        role=role,
        task=task,
        tier=tier,
        score=score,
        status=status,
        log_index=index,
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same attestation stored concurrently: one wins
        raise Conflict(f"attestation {digest[:16]} is already stored") from None
    return _view(row)


def list_attestations(
    session: Session, principal: Principal | None, repo_id: str, version: str
) -> list[AttestationView]:
    release = releases.find_release(session, repo_id, version, viewer=principal)
    rows = session.exec(
        select(EvaluationAttestation)
        .where(EvaluationAttestation.release_id == release.id)
        .order_by(col(EvaluationAttestation.id))
    )
    return [_view(r) for r in rows]


def _row(session: Session, release: Release, attestation_id: int) -> EvaluationAttestation:
    row = session.get(EvaluationAttestation, attestation_id, populate_existing=True)
    if row is None or row.release_id != release.id:
        raise EvaluationAttestationNotFound(f"no evaluation attestation {attestation_id}")
    return row


def attestation_envelope(
    session: Session, principal: Principal | None, repo_id: str, version: str, attestation_id: int
) -> bytes:
    """The stored DSSE envelope, byte for byte as submitted (canonical JSON)."""
    release = releases.find_release(session, repo_id, version, viewer=principal)
    return _row(session, release, attestation_id).envelope


def decide_attestation(
    session: Session,
    principal: Principal,
    repo_id: str,
    version: str,
    attestation_id: int,
    *,
    decision: str,
    now: datetime,
) -> AttestationView:
    """The publisher accepts or rejects a community attestation (one conditional write, one
    log event); the loser of a race gets 409 with the state that won."""
    if decision not in DECISIONS:
        raise ValidationFailed(f"decision must be accept or reject; got {decision!r:.40}")
    release = releases.find_release(session, repo_id, version, viewer=principal)
    is_publisher = principal.role is Role.publisher and principal.org_id == release.org_id
    if not (is_publisher or principal.role is Role.admin):
        raise Forbidden("only the release's publisher decides on its attestations")
    begin_write(session)
    row = _row(session, release, attestation_id)
    if row.status != "community":
        raise EvaluationDecisionInvalid(
            f"attestation {attestation_id} is {row.status}; only a community one is decided",
            extra={"state": row.status},
        )
    status = "accepted" if decision == "accept" else "rejected"
    done = session.execute(
        update(EvaluationAttestation)
        .where(col(EvaluationAttestation.id) == attestation_id)
        .where(col(EvaluationAttestation.status) == "community")
        .values(status=status)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(row)
        raise EvaluationDecisionInvalid(
            f"attestation {attestation_id} was decided meanwhile: {row.status}",
            extra={"state": row.status},
        )
    record_event(
        session,
        action=f"evaluation.{status}",
        actor=Actor.of(principal),
        resource=f"release:{repo_id}@{release.version}",
        now=now,
        org_id=release.org_id,
        fields={"attestation_id": attestation_id, "attestation_sha256": row.digest},
    )
    session.refresh(row)
    return _view(row)


# Shown as the publisher's: signed by the org's key, or a community one it accepted.
_ENDORSED = ("publisher", "accepted")


def endorsed_attestations(session: Session, release: Release) -> list[EvaluationAttestation]:
    """The release's attestations the publisher stands behind, oldest first."""
    return list(
        session.exec(
            select(EvaluationAttestation)
            .where(
                EvaluationAttestation.release_id == release.id,
                col(EvaluationAttestation.status).in_(_ENDORSED),
            )
            .order_by(col(EvaluationAttestation.id))
        )
    )


def bom_evaluations(session: Session, release: Release) -> list[EvaluationResult]:
    """The endorsed attestations as AI BOM evaluation results (``release.aibom``)."""
    results = []
    for row in endorsed_attestations(session, release):
        view = _view(row)
        runner = "third-party" if row.role == "third_party" else row.role
        results.append(
            EvaluationResult(
                tier=row.tier,
                task=row.task,
                metric="accuracy",
                value=row.score,
                attestation_sha256=row.digest,
                runner=runner,
                interval=(view.interval[0], view.interval[1]),
            )
        )
    return results


def hub_files(session: Session, release: Release) -> dict[str, bytes]:
    """``evaluations/<digest>.intoto.json`` -> envelope, for the Hub listing of each tier."""
    return {
        f"evaluations/{row.digest[:16]}.intoto.json": row.envelope
        for row in endorsed_attestations(session, release)
    }


def attested_scores(session: Session, release: Release) -> list[AttestedScore]:
    """Every attestation of the release but rejected ones, as the release page shows them."""
    rows = session.exec(
        select(EvaluationAttestation)
        .where(
            EvaluationAttestation.release_id == release.id,
            EvaluationAttestation.status != "rejected",
        )
        .order_by(col(EvaluationAttestation.id))
    )
    scores = []
    for row in rows:
        view = _view(row)
        total = open_eval_attestation(row.envelope, None).predicate["score"]["total"]
        scores.append(
            AttestedScore(
                tier=row.tier,
                task=row.task,
                value=row.score,
                lower=view.interval[0],
                upper=view.interval[1],
                total=int(total),
                status=row.status,
                digest=row.digest,
            )
        )
    return scores
