"""Grants: decide access requests (by policy or reviewer), deny, revoke, list, check at use.

Only ids the caller may see resolve: another account's requests and grants answer 404,
exactly like ids that do not exist. Every decision is recorded in the log, in the same
transaction as the change. Submission and the public surface: :mod:`gateway.services.access`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import (
    AccessRequest,
    AccessRequestStatus,
    Grant,
    Release,
    ReleaseTier,
    Role,
)
from gateway.db.timeutil import as_utc
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.ledger.events import Actor, record_event
from gateway.services.access_policy import (
    TierPolicy,
    current_policy,
)

MAX_REASON = 2000


class TierNotGated(ValidationFailed):
    code = "tier_not_gated"
    title = "Tier not gated"


class AlreadyDecided(Conflict):
    code = "request_already_decided"
    title = "Request already decided"


class GrantLimitReached(Conflict):
    code = "grant_limit_reached"
    title = "Grant limit reached"


def gated_tier(session: Session, release: Release, tier: str) -> ReleaseTier:
    row = session.exec(
        select(ReleaseTier).where(ReleaseTier.release_id == release.id, ReleaseTier.tier == tier)
    ).first()
    if row is None:
        raise NotFound(f"{release.repo_id}@{release.version} has no tier {tier!r}")
    if not row.gated:
        raise TierNotGated(f"tier {tier!r} is open: download it without a grant")
    return row


def active_grant_count(session: Session, release: Release, tier: str, now: datetime) -> int:
    rows = session.exec(
        select(Grant.expires_at).where(
            Grant.release_id == release.id, Grant.tier == tier, col(Grant.revoked_at).is_(None)
        )
    )
    return sum(1 for expires_at in rows if as_utc(expires_at) > now)


def release_resource(release: Release, tier: str) -> str:
    return f"release:{release.repo_id}@{release.version}#{tier}"


def grant_request(
    session: Session,
    request: AccessRequest,
    release: Release,
    policy: TierPolicy,
    reviewer: Principal | None,
    actor: Principal,
    now: datetime,
) -> Grant:
    request.status = AccessRequestStatus.approved.value
    request.decided_by = reviewer.user_id if reviewer else None
    request.decided_at = now
    session.add(request)
    grant = Grant(
        user_id=request.user_id,
        release_id=request.release_id,
        tier=request.tier,
        request_id=request.id,  # type: ignore[arg-type]
        policy_version_id=request.policy_version_id,
        decision="manual" if reviewer else "auto",
        decided_by=reviewer.user_id if reviewer else None,
        created_at=now,
        expires_at=now + timedelta(seconds=policy.grant_lifetime_seconds),
    )
    session.add(grant)
    try:
        session.flush()
    except IntegrityError as exc:
        # Two reviewers approving at once: the UNIQUE request_id lets exactly one win.
        raise AlreadyDecided(f"request {request.id} was decided meanwhile") from exc
    record_event(
        session,
        action="grant.approved",
        actor=Actor.of(actor),
        resource=release_resource(release, request.tier),
        now=now,
        org_id=release.org_id,
        fields={
            "request_id": request.id,
            "grant_id": grant.id,
            "decision": grant.decision,
            "expires_at": grant.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    return grant


def deny_request_as(
    session: Session,
    request: AccessRequest,
    release: Release,
    reason: str,
    reviewer: Principal | None,
    actor: Principal,
    now: datetime,
) -> None:
    request.status = AccessRequestStatus.denied.value
    request.reason = reason
    request.decided_by = reviewer.user_id if reviewer else None
    request.decided_at = now
    session.add(request)
    session.flush()
    record_event(
        session,
        action="grant.denied",
        actor=Actor.of(actor),
        resource=release_resource(release, request.tier),
        now=now,
        org_id=release.org_id,
        fields={"request_id": request.id, "decision": "manual" if reviewer else "auto"},
    )


def _reviewable(principal: Principal, release: Release) -> bool:
    return principal.role is Role.publisher and principal.org_id == release.org_id


def _visible(session: Session, principal: Principal, owner_id: int, release_id: int) -> bool:
    """The owner sees their own request or grant; publishers see those on their org's releases."""
    if owner_id == principal.user_id:
        return True
    release = session.get(Release, release_id)
    return release is not None and _reviewable(principal, release)


def get_request(session: Session, principal: Principal, request_id: int) -> AccessRequest:
    """A request the caller made, or one on their org's releases (publishers); else 404."""
    request = session.get(AccessRequest, request_id)
    if request is not None and _visible(session, principal, request.user_id, request.release_id):
        return request
    raise NotFound(f"no access request {request_id}")


def _review_target(
    session: Session, principal: Principal, request_id: int
) -> tuple[AccessRequest, Release]:
    request = session.get(AccessRequest, request_id)
    release = session.get(Release, request.release_id) if request else None
    if request is None or release is None or not _reviewable(principal, release):
        raise NotFound(f"no access request {request_id} on your org's releases")
    if request.status != AccessRequestStatus.pending.value:
        raise AlreadyDecided(f"request {request_id} is already {request.status}")
    return request, release


def approve_request(
    session: Session, principal: Principal, request_id: int, *, now: datetime
) -> Grant:
    request, release = _review_target(session, principal, request_id)
    _, policy = current_policy(session, release, request.tier, now=now)
    if policy.max_grants is not None and (
        active_grant_count(session, release, request.tier, now) >= policy.max_grants
    ):
        raise GrantLimitReached(f"the tier already has {policy.max_grants} active grant(s)")
    return grant_request(session, request, release, policy, principal, principal, now)


def deny_request(
    session: Session, principal: Principal, request_id: int, *, reason: str, now: datetime
) -> AccessRequest:
    if not reason.strip() or len(reason) > MAX_REASON:
        raise ValidationFailed(f"give a reason of 1-{MAX_REASON} characters")
    request, release = _review_target(session, principal, request_id)
    deny_request_as(session, request, release, reason.strip(), principal, principal, now)
    return request


def get_grant(session: Session, principal: Principal, grant_id: int) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is not None and _visible(session, principal, grant.user_id, grant.release_id):
        return grant
    raise NotFound(f"no grant {grant_id}")


def revoke_grant(
    session: Session, principal: Principal, grant_id: int, *, reason: str, now: datetime
) -> Grant:
    """Revoke at once: every check of a grant reads ``revoked_at``."""
    if not reason.strip() or len(reason) > MAX_REASON:
        raise ValidationFailed(f"give a reason of 1-{MAX_REASON} characters")
    grant = session.get(Grant, grant_id)
    release = session.get(Release, grant.release_id) if grant else None
    if grant is None or release is None or not _reviewable(principal, release):
        raise NotFound(f"no grant {grant_id} on your org's releases")
    if grant.revoked_at is None:
        grant.revoked_at = now
        grant.revoked_by = principal.user_id
        grant.revoke_reason = reason.strip()
        session.add(grant)
        session.flush()
        record_event(
            session,
            action="grant.revoked",
            actor=Actor.of(principal),
            resource=release_resource(release, grant.tier),
            now=now,
            org_id=release.org_id,
            fields={"grant_id": grant.id, "reason": grant.revoke_reason},
        )
    return grant


def list_requests(
    session: Session, principal: Principal, *, review: bool, status: str | None = None
) -> list[AccessRequest]:
    """The caller's own requests, or (``review``) those on their org's releases."""
    query = select(AccessRequest).order_by(col(AccessRequest.id))
    if review:
        if principal.role is not Role.publisher or principal.org_id is None:
            return []
        query = query.join(Release, col(Release.id) == col(AccessRequest.release_id)).where(
            Release.org_id == principal.org_id
        )
    else:
        query = query.where(AccessRequest.user_id == principal.user_id)
    if status is not None:
        query = query.where(AccessRequest.status == status)
    return list(session.exec(query))


def list_grants(session: Session, principal: Principal, *, review: bool) -> list[Grant]:
    query = select(Grant).order_by(col(Grant.id))
    if review:
        if principal.role is not Role.publisher or principal.org_id is None:
            return []
        query = query.join(Release, col(Release.id) == col(Grant.release_id)).where(
            Release.org_id == principal.org_id
        )
    else:
        query = query.where(Grant.user_id == principal.user_id)
    return list(session.exec(query))


def grant_state(grant: Grant, now: datetime) -> str:
    if grant.revoked_at is not None:
        return "revoked"
    return "active" if as_utc(grant.expires_at) > now else "expired"


def active_grant(
    session: Session, principal: Principal, release: Release, tier: str, now: datetime
) -> Grant | None:
    """The caller's grant on ``release``'s ``tier`` valid at ``now``, or None.

    Expiry is checked here, at use, so expired grants stop working without any job;
    revocation is a column read on every call, so it takes effect at once.
    """
    rows = session.exec(
        select(Grant).where(
            Grant.user_id == principal.user_id,
            Grant.release_id == release.id,
            Grant.tier == tier,
            col(Grant.revoked_at).is_(None),
        )
    )
    live = [g for g in rows if as_utc(g.expires_at) > now]
    return max(live, key=lambda g: as_utc(g.expires_at)) if live else None
