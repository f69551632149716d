"""Gated access over HTTP: terms, attestation submission, review, grants and tier policies."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import AccessRequest, Grant, PolicyVersion, Release
from gateway.db.timeutil import as_utc
from gateway.deps import NowDep, OptionalPrincipal, RowId, SessionDep, StateDep, require_scope
from gateway.errors import InsufficientScope, NotFound
from gateway.problems import problem_responses
from gateway.schemas.access import (
    AccessRequestCreate,
    AccessRequestDetail,
    AccessRequestPublic,
    GrantPublic,
    PolicyPublic,
    PolicyUpdate,
    ReasonBody,
    TermsPublic,
)
from gateway.services import access, access_policy, releases
from gateway.services.access_views import AccessNames

router = APIRouter(
    prefix="/api/access", tags=["access"], responses=problem_responses(401, 403, 404, 503)
)
Reader = Annotated[Principal, Depends(require_scope("read"))]
Requester = Annotated[Principal, Depends(require_scope("access"))]
Reviewer = Annotated[Principal, Depends(require_scope("review"))]
PublisherDep = Annotated[Principal, Depends(require_scope("publish"))]


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def request_public(names: AccessNames, row: AccessRequest) -> AccessRequestPublic:
    release = names.release(row.release_id)
    grant = names.grant_of(row.id)
    assert row.id is not None
    return AccessRequestPublic(
        id=row.id,
        repo_id=release.repo_id,
        version=release.version,
        tier=row.tier,
        requester=names.user(row.user_id) or "",
        status=row.status,
        reason=row.reason,
        fields=json.loads(row.fields_json),
        key_id=row.key_id,
        policy_version=names.policy_version(row.policy_version_id),
        created_at=as_utc(row.created_at),
        decided_at=_utc(row.decided_at),
        decided_by=names.user(row.decided_by),
        grant_id=grant,
        attestation_digest=row.attestation_digest,
    )


def grant_public(names: AccessNames, row: Grant, now: datetime) -> GrantPublic:
    release = names.release(row.release_id)
    assert row.id is not None
    return GrantPublic(
        id=row.id,
        repo_id=release.repo_id,
        version=release.version,
        tier=row.tier,
        grantee=names.user(row.user_id) or "",
        request_id=row.request_id,
        policy_version=names.policy_version(row.policy_version_id),
        decision=row.decision,
        decided_by=names.user(row.decided_by),
        state=access.grant_state(row, now),
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        revoked_at=_utc(row.revoked_at),
        revoke_reason=row.revoke_reason,
    )


@router.get("/terms/{org}/{name}", summary="Terms, release digest and fields of a gated tier.")
def terms(
    org: str,
    name: str,
    viewer: OptionalPrincipal,
    session: SessionDep,
    now: NowDep,
    version: Annotated[str | None, Query(max_length=64)] = None,
    tier: Annotated[str, Query(max_length=32)] = "optimized",
) -> TermsPublic:
    release = releases.find_release(session, f"{org}/{name}", version, viewer=viewer)
    access.gated_tier(session, release, tier)
    _, policy = access_policy.current_policy(session, release, tier, now=now)
    return TermsPublic(
        repo_id=release.repo_id,
        version=release.version,
        tier=tier,
        release_digest=release.statement_digest,
        terms_digest=release.terms_digest,
        terms=release.terms_text,
        license=release.license,
        fields=[f.to_dict() for f in policy.fields],
        approval=policy.mode,
        grant_lifetime_seconds=policy.grant_lifetime_seconds,
    )


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a signed usage attestation; it is approved, denied or queued for review.",
    responses=problem_responses(409, 413, 415, 422, 429),
)
def submit(
    body: AccessRequestCreate,
    request: Request,
    principal: Requester,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
) -> AccessRequestPublic:
    submitted = access.submit_attestation(
        session,
        principal,
        repo_id=body.repo_id,
        version=body.version,
        tier=body.tier,
        envelope=body.attestation.encode("utf-8"),
        limits=access.AttestationLimits.from_settings(state.settings),
        client_address=request.client.host if request.client else "unknown",
        now=now,
    )
    return request_public(AccessNames(session), submitted.request)


@router.get("/requests", summary="The caller's requests, or (review=true) their org's queue.")
def list_requests(
    principal: Reader,
    session: SessionDep,
    review: bool = False,
    status_filter: Annotated[str | None, Query(alias="status", max_length=16)] = None,
) -> list[AccessRequestPublic]:
    if review and not principal.has_scope("review"):
        raise InsufficientScope("reviewing needs the 'review' scope")
    rows = access.list_requests(session, principal, review=review, status=status_filter)
    names = AccessNames(session)
    return [request_public(names, row) for row in rows]


@router.get("/requests/{request_id}", summary="One request, with the attestation verbatim.")
def get_request(request_id: RowId, principal: Reader, session: SessionDep) -> AccessRequestDetail:
    row = access.get_request(session, principal, request_id)
    public = request_public(AccessNames(session), row)
    return AccessRequestDetail(**public.model_dump(), attestation=row.attestation)


@router.post(
    "/requests/{request_id}/approve",
    summary="Approve a pending request of your org's release: a grant is issued.",
    responses=problem_responses(409),
)
def approve(
    request_id: RowId, principal: Reviewer, session: SessionDep, now: NowDep
) -> GrantPublic:
    grant = access.approve_request(session, principal, request_id, now=now)
    return grant_public(AccessNames(session), grant, now)


@router.post(
    "/requests/{request_id}/deny",
    summary="Deny a pending request, saying why (the requester sees the reason).",
    responses=problem_responses(409, 413, 415, 422),
)
def deny(
    request_id: RowId, body: ReasonBody, principal: Reviewer, session: SessionDep, now: NowDep
) -> AccessRequestPublic:
    row = access.deny_request(session, principal, request_id, reason=body.reason, now=now)
    return request_public(AccessNames(session), row)


@router.get("/grants", summary="The caller's grants, or (review=true) their org's.")
def list_grants(
    principal: Reader, session: SessionDep, now: NowDep, review: bool = False
) -> list[GrantPublic]:
    if review and not principal.has_scope("review"):
        raise InsufficientScope("reviewing needs the 'review' scope")
    names = AccessNames(session)
    rows = access.list_grants(session, principal, review=review)
    return [grant_public(names, row, now) for row in rows]


@router.get("/grants/{grant_id}", summary="One grant.")
def get_grant(grant_id: RowId, principal: Reader, session: SessionDep, now: NowDep) -> GrantPublic:
    return grant_public(AccessNames(session), access.get_grant(session, principal, grant_id), now)


@router.post(
    "/grants/{grant_id}/revoke",
    summary="Revoke a grant at once, saying why (409 when it is revoked already).",
    responses=problem_responses(409, 413, 415, 422),
)
def revoke(
    grant_id: RowId, body: ReasonBody, principal: Reviewer, session: SessionDep, now: NowDep
) -> GrantPublic:
    grant = access.revoke_grant(session, principal, grant_id, reason=body.reason, now=now)
    return grant_public(AccessNames(session), grant, now)


def _own_release(
    session: Session, principal: Principal, org: str, name: str, version: str
) -> Release:
    release = releases.find_release(session, f"{org}/{name}", version, viewer=principal)
    if principal.org_id != release.org_id:
        raise NotFound(f"no release {org}/{name}@{version} of your org")
    return release


def _policy_public(session: Session, release: Release, row: PolicyVersion) -> PolicyPublic:
    names = AccessNames(session)
    return PolicyPublic(
        repo_id=release.repo_id,
        version=release.version,
        tier=row.tier,
        policy_version=row.version,
        policy=json.loads(row.policy_json),
        created_at=as_utc(row.created_at),
        created_by=names.user(row.created_by),
    )


@router.get(
    "/policies/{org}/{name}/{version}/{tier}",
    summary="Every version of a gated tier's policy, oldest first (publishers of the org).",
)
def policy_history(
    org: str,
    name: str,
    version: str,
    tier: str,
    principal: Reviewer,
    session: SessionDep,
    now: NowDep,
) -> list[PolicyPublic]:
    release = _own_release(session, principal, org, name, version)
    access.gated_tier(session, release, tier)
    access_policy.current_policy(session, release, tier, now=now)
    rows = access_policy.policy_history(session, release, tier)
    return [_policy_public(session, release, row) for row in rows]


@router.put(
    "/policies/{org}/{name}/{version}/{tier}",
    summary="Change how a gated tier's requests are decided (a new policy version).",
    responses=problem_responses(409, 413, 415, 422),
)
def change_policy(
    org: str,
    name: str,
    version: str,
    tier: str,
    body: PolicyUpdate,
    principal: PublisherDep,
    session: SessionDep,
    now: NowDep,
) -> PolicyPublic:
    release = _own_release(session, principal, org, name, version)
    access.gated_tier(session, release, tier)
    row = access_policy.change_policy(
        session,
        principal,
        release,
        tier,
        mode=body.mode,
        grant_lifetime_seconds=body.grant_lifetime_seconds,
        allow=body.allow,
        deny=body.deny,
        max_grants=body.max_grants,
        now=now,
    )
    return _policy_public(session, release, row)
