"""Gated access: submit a usage attestation (verify, bind to the caller, store, decide) and
the grant operations of :mod:`gateway.services.grants`, re-exported as one surface.

The envelope is stored verbatim so anyone can re-verify a decision later; its nonce is UNIQUE
in the database, so a replay fails whichever gateway process receives it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import (
    AccessRequest,
    AccessRequestStatus,
    Grant,
    PublicKeyRecord,
    Release,
    ReleaseStatus,
)
from gateway.errors import Conflict, ValidationFailed
from gateway.ledger.events import Actor, record_event
from gateway.services.access_policy import check_fields, current_policy, evaluate
from gateway.services.grants import (
    AlreadyDecided,
    GrantLimitReached,
    TierNotGated,
    active_grant,
    active_grant_count,
    approve_request,
    deny_request,
    deny_request_as,
    gated_tier,
    get_grant,
    get_request,
    grant_request,
    grant_state,
    list_grants,
    list_requests,
    release_resource,
    revoke_grant,
)
from gateway.services.releases import find_release
from licensing.errors import AttestationTooLargeError, AttestationWrongSubjectError
from licensing.keys import PublicKey
from licensing.statements import UsageAttestation, verify_usage_attestation

__all__ = [
    "AlreadyDecided",
    "AttestationLimits",
    "AttestationReplayed",
    "AttestationTooOld",
    "AttestationWrongAccount",
    "GrantLimitReached",
    "NoRegisteredKey",
    "ReleaseUnavailable",
    "Submitted",
    "TierNotGated",
    "active_grant",
    "approve_request",
    "deny_request",
    "gated_tier",
    "get_grant",
    "get_request",
    "grant_state",
    "list_grants",
    "list_requests",
    "revoke_grant",
    "submit_attestation",
]


class AttestationTooOld(ValidationFailed):
    code = "attestation_too_old"
    title = "Attestation too old"


class AttestationWrongAccount(ValidationFailed):
    code = "attestation_wrong_account"
    title = "Attestation names another account"


class AttestationReplayed(Conflict):
    code = "attestation_replayed"
    title = "Attestation already submitted"


class NoRegisteredKey(ValidationFailed):
    code = "no_registered_key"
    title = "No registered key"


class ReleaseUnavailable(Conflict):
    code = "release_unavailable"
    title = "Release unavailable"


@dataclass(frozen=True, slots=True)
class AttestationLimits:
    """How strict the gateway is with attestations (from Settings)."""

    max_bytes: int
    max_age_seconds: int
    max_skew_seconds: int
    max_lifetime_seconds: int


@dataclass(frozen=True, slots=True)
class Submitted:
    request: AccessRequest
    grant: Grant | None


def _account_keys(session: Session, principal: Principal) -> list[PublicKey]:
    rows = session.exec(
        select(PublicKeyRecord).where(
            PublicKeyRecord.user_id == principal.user_id,
            col(PublicKeyRecord.revoked_at).is_(None),
        )
    )
    return [PublicKey.from_pem(row.pem.encode("ascii")) for row in rows]


def submit_attestation(
    session: Session,
    principal: Principal,
    *,
    repo_id: str,
    version: str,
    tier: str,
    envelope: bytes,
    limits: AttestationLimits,
    now: datetime,
) -> Submitted:
    """Verify a signed usage attestation, store it verbatim, and decide it by the tier's policy."""
    # Bounded before anything parses it.
    if len(envelope) > limits.max_bytes:
        raise AttestationTooLargeError(f"an attestation may be at most {limits.max_bytes} bytes")
    release = find_release(session, repo_id, version, viewer=principal)
    if release.status != ReleaseStatus.published.value:
        raise ReleaseUnavailable(f"{repo_id}@{version} is {release.status}")
    gated_tier(session, release, tier)
    keys = _account_keys(session, principal)
    if not keys:
        raise NoRegisteredKey("register a public key first: tiergate keys register KEY.pub.pem")
    version_row, policy = current_policy(session, release, tier, now=now)
    attestation = verify_usage_attestation(
        envelope,
        trusted_keys=keys,
        expected_release_digest=release.statement_digest,
        expected_terms_digest=release.terms_digest,
        required_fields=policy.required_fields,
        now=now,
        expected_tier=tier,
        max_skew_seconds=limits.max_skew_seconds,
        max_lifetime_seconds=limits.max_lifetime_seconds,
        max_bytes=limits.max_bytes,
    )
    _check_binding(attestation, release, principal, now, limits)
    check_fields(policy, attestation.fields)
    decision = evaluate(policy, attestation.fields, active_grant_count(session, release, tier, now))
    request = AccessRequest(
        user_id=principal.user_id,
        release_id=release.id,  # type: ignore[arg-type]
        tier=tier,
        key_id=attestation.requester_key_id,
        nonce=attestation.nonce,
        attestation=envelope.decode("utf-8"),
        attestation_digest=hashlib.sha256(envelope).hexdigest(),
        fields_json=json.dumps(dict(attestation.fields), sort_keys=True),
        status=AccessRequestStatus.pending.value,
        policy_version_id=version_row.id,  # type: ignore[arg-type]
        reason=decision.reason,
        attestation_expires_at=attestation.expires_at,
        created_at=now,
    )
    session.add(request)
    try:
        session.flush()
    except IntegrityError as exc:
        # The UNIQUE nonce is the real guard: it holds across gateway processes.
        raise AttestationReplayed("this attestation (its nonce) was already submitted") from exc
    record_event(
        session,
        action="attestation.submitted",
        actor=Actor.of(principal),
        resource=release_resource(release, tier),
        now=now,
        org_id=release.org_id,
        fields={
            "request_id": request.id,
            "attestation_digest": request.attestation_digest,
            "key_id": request.key_id,
            "policy_version": version_row.version,
        },
    )
    grant = None
    if decision.outcome == "approve":
        grant = grant_request(session, request, release, policy, None, principal, now)
    elif decision.outcome == "deny":
        reason = decision.reason or "refused by the tier's policy"
        deny_request_as(session, request, release, reason, None, principal, now)
    return Submitted(request, grant)


def _check_binding(
    attestation: UsageAttestation,
    release: Release,
    principal: Principal,
    now: datetime,
    limits: AttestationLimits,
) -> None:
    if (attestation.repo_id, attestation.version) != (release.repo_id, release.version):
        raise AttestationWrongSubjectError("the attestation names another release")
    if attestation.requester_account != principal.username:
        raise AttestationWrongAccount("the attestation names another account than the caller")
    if now - attestation.issued_at > timedelta(seconds=limits.max_age_seconds):
        raise AttestationTooOld(
            f"the attestation was issued more than {limits.max_age_seconds} s ago; sign a new one"
        )
