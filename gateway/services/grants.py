"""Grants: decide access requests (by policy or reviewer), deny, revoke, list, check at use.

Only ids the caller may see resolve: another account's requests and grants answer 404,
exactly like ids that do not exist. Every decision is recorded in the log, in the same
transaction as the change. Submission and the public surface: :mod:`gateway.services.access`.

Decisions race across replicas (two reviewers, a reviewer and the policy, two revocations).
Each transition is one conditional UPDATE (``WHERE status = 'pending'``, ``WHERE revoked_at
IS NULL``) whose row count says who won; the loser gets 409 with the state that won, and only
the winner logs. Grants of one tier are issued under a lock on the tier's row, so the cap is
counted and enforced in one serialized step.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.engine import begin_write
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
from release.formats import PRIMARY_TIER, grant_tier, parse_own_grant

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


class GrantAlreadyRevoked(Conflict):
    code = "grant_already_revoked"
    title = "Grant already revoked"


def gated_tier(session: Session, release: Release, tier: str) -> ReleaseTier:
    row = session.exec(
        select(ReleaseTier).where(ReleaseTier.release_id == release.id, ReleaseTier.tier == tier)
    ).first()
    if row is None:
        raise NotFound(f"{release.repo_id}@{release.version} has no tier {tier!r}")
    if not row.gated:
        raise TierNotGated(f"tier {tier!r} is open: download it without a grant")
    return row


def lock_tier(session: Session, release: Release, tier: str) -> None:
    """Serialize grant issuance on ``tier`` until commit (PostgreSQL row lock).

    SQLite needs no row lock: its write transactions (``begin_write``) are serialized whole.
    """
    session.exec(
        select(ReleaseTier.id)
        .where(ReleaseTier.release_id == release.id, ReleaseTier.tier == tier)
        .with_for_update()
    ).first()


def active_grant_count(session: Session, release: Release, tier: str, now: datetime) -> int:
    rows = session.exec(
        select(Grant.expires_at).where(
            Grant.release_id == release.id, Grant.tier == tier, col(Grant.revoked_at).is_(None)
        )
    )
    return sum(1 for expires_at in rows if as_utc(expires_at) > now)


def release_resource(release: Release, tier: str) -> str:
    return f"release:{release.repo_id}@{release.version}#{tier}"


def _request_status(session: Session, request_id: int) -> str:
    """The stored status, read from the database (not from the session's copy)."""
    status = session.exec(
        select(AccessRequest.status).where(AccessRequest.id == request_id)
    ).first()
    return status or "missing"


def _decide(
    session: Session,
    request: AccessRequest,
    status: AccessRequestStatus,
    reviewer: Principal | None,
    now: datetime,
    reason: str | None = None,
) -> None:
    """pending -> ``status`` as one conditional update: exactly one decision wins."""
    assert request.id is not None
    request_id = request.id
    values: dict[str, object] = {
        "status": status.value,
        "decided_by": reviewer.user_id if reviewer else None,
        "decided_at": now,
    }
    if reason is not None:
        values["reason"] = reason
    won = session.execute(
        update(AccessRequest)
        .where(
            col(AccessRequest.id) == request_id,
            col(AccessRequest.status) == AccessRequestStatus.pending.value,
        )
        .values(**values)
        .returning(col(AccessRequest.id))
        .execution_options(synchronize_session=False)
    ).first()
    if won is None:
        current = _request_status(session, request_id)
        raise AlreadyDecided(f"request {request_id} is already {current}", extra={"state": current})
    session.refresh(request)


def grant_request(
    session: Session,
    request: AccessRequest,
    release: Release,
    policy: TierPolicy,
    reviewer: Principal | None,
    actor: Principal,
    now: datetime,
) -> Grant:
    """Approve a pending request and issue its grant, within the tier's cap (if any)."""
    assert request.id is not None
    request_id = request.id
    _decide(session, request, AccessRequestStatus.approved, reviewer, now)
    lock_tier(session, release, request.tier)
    if policy.max_grants is not None and (
        active_grant_count(session, release, request.tier, now) >= policy.max_grants
    ):
        # Rolled back with the whole transaction: the request stays pending.
        raise GrantLimitReached(
            f"the tier already has {policy.max_grants} active grant(s)",
            extra={"state": AccessRequestStatus.pending.value},
        )
    grant = Grant(
        user_id=request.user_id,
        release_id=request.release_id,
        tier=request.tier,
        request_id=request_id,
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
        # Unreachable after the conditional update; kept as the schema's last word. No
        # attribute of a session object is read here: the failed flush expired them.
        raise AlreadyDecided(f"request {request_id} was decided meanwhile") from exc
    record_event(
        session,
        action="grant.approved",
        actor=Actor.of(actor),
        resource=release_resource(release, request.tier),
        now=now,
        org_id=release.org_id,
        fields={
            "request_id": request_id,
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
    _decide(session, request, AccessRequestStatus.denied, reviewer, now, reason=reason)
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
    # Everything from here to commit is one write transaction (a no-op on PostgreSQL).
    begin_write(session)
    request = session.get(AccessRequest, request_id, populate_existing=True)
    release = session.get(Release, request.release_id) if request else None
    if request is None or release is None or not _reviewable(principal, release):
        raise NotFound(f"no access request {request_id} on your org's releases")
    if request.status != AccessRequestStatus.pending.value:
        # The fast answer; the conditional update in _decide is the one that counts.
        raise AlreadyDecided(
            f"request {request_id} is already {request.status}", extra={"state": request.status}
        )
    return request, release


def approve_request(
    session: Session, principal: Principal, request_id: int, *, now: datetime
) -> Grant:
    request, release = _review_target(session, principal, request_id)
    _, policy = current_policy(session, release, request.tier, now=now)
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
    """Revoke at once (every check of a grant reads ``revoked_at``); a second revocation is 409."""
    if not reason.strip() or len(reason) > MAX_REASON:
        raise ValidationFailed(f"give a reason of 1-{MAX_REASON} characters")
    begin_write(session)
    grant = session.get(Grant, grant_id)
    release = session.get(Release, grant.release_id) if grant else None
    if grant is None or release is None or not _reviewable(principal, release):
        raise NotFound(f"no grant {grant_id} on your org's releases")
    won = session.execute(
        update(Grant)
        .where(col(Grant.id) == grant_id, col(Grant.revoked_at).is_(None))
        .values(revoked_at=now, revoked_by=principal.user_id, revoke_reason=reason.strip())
        .returning(col(Grant.id))
        .execution_options(synchronize_session=False)
    ).first()
    if won is None:
        raise GrantAlreadyRevoked(
            f"grant {grant_id} is already revoked", extra={"state": "revoked"}
        )
    session.refresh(grant)
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


def grant_tier_of(release: Release, tier: str) -> str:
    """The tier whose grant opens ``release``'s ``tier``: the rule is
    :func:`release.formats.grant_tier` (a release's further optimized artifacts,
    ``optimized_<name>``, open with the grant on ``optimized``) applied with the tiers the
    publisher's signed statement gives their own grant (``optimization["own_grant"]``).
    Other tiers are their own."""
    if not tier.startswith(PRIMARY_TIER + "_"):
        return tier
    own = own_grant_tiers_of(release)
    return tier if _UNREADABLE in own else grant_tier(tier, own)


# The statement is immutable and signed, so what it says about grants can be kept per
# statement digest: a bounded cache of facts, not shared state (any replica derives the same).
_OWN_GRANT_CACHE: dict[str, frozenset[str]] = {}
_OWN_GRANT_CACHE_SIZE = 1024
_UNREADABLE = "*"  # no tier name has a "*"


def own_grant_tiers_of(release: Release) -> frozenset[str]:
    """The tiers of ``release`` its publisher gave their own grant (from the stored,
    verified-at-publish release statement)."""
    key = release.statement_digest
    cached = _OWN_GRANT_CACHE.get(key)
    if cached is None:
        cached = _parse_own_grant(release.statement_envelope)
        if len(_OWN_GRANT_CACHE) >= _OWN_GRANT_CACHE_SIZE:
            _OWN_GRANT_CACHE.clear()
        _OWN_GRANT_CACHE[key] = cached
    return cached


def _parse_own_grant(envelope_text: str) -> frozenset[str]:
    from licensing.dsse import Envelope
    from licensing.errors import LicensingError
    from licensing.statements import parse_release_statement

    try:
        envelope = Envelope.from_json(envelope_text.encode("utf-8"))
        statement = parse_release_statement(envelope.payload)
    except LicensingError:
        # Stored only after verification at publish; unreadable now means a damaged row:
        # fail closed (every listed artifact then needs its own grant).
        return frozenset({_UNREADABLE})
    return parse_own_grant(statement.optimization)


def active_grant(
    session: Session, principal: Principal, release: Release, tier: str, now: datetime
) -> Grant | None:
    """The caller's grant on ``release``'s ``tier`` valid at ``now``, or None.

    Expiry is checked here, at use, so expired grants stop working without any job;
    revocation is a column read on every call, so it takes effect at once. The grant on
    ``optimized`` also opens the release's further artifacts, except those its publisher
    gave their own grant (:func:`grant_tier_of`).
    """
    rows = session.exec(
        select(Grant).where(
            Grant.user_id == principal.user_id,
            Grant.release_id == release.id,
            col(Grant.tier).in_({tier, grant_tier_of(release, tier)}),
            col(Grant.revoked_at).is_(None),
        )
    )
    live = [g for g in rows if as_utc(g.expires_at) > now]
    return max(live, key=lambda g: as_utc(g.expires_at)) if live else None
