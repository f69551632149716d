"""A publisher's policy: report disclosure window and auditor key (`/api/orgs/{org}/policy`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from gateway.auth.principal import Principal
from gateway.deps import NowDep, Public, SessionDep, require_scope
from gateway.problems import problem_responses
from gateway.schemas.reports import PublisherPolicyPublic, PublisherPolicyUpdate
from gateway.services import publisher_policy

router = APIRouter(prefix="/api/orgs", tags=["reports"], responses=problem_responses(401, 503))
Publisher = Annotated[Principal, Depends(require_scope("publish"))]


def _public(view: publisher_policy.PolicyView) -> PublisherPolicyPublic:
    return PublisherPolicyPublic(
        org=view.org,
        report_disclosure_days=view.report_disclosure_days,
        auditor_key=view.auditor_key,
        auditor_key_id=view.auditor_key_id,
    )


@router.get(
    "/{org}/policy",
    dependencies=[Public],
    response_model=PublisherPolicyPublic,
    summary="An org's publisher policy (public: reporters and auditors rely on it).",
    responses=problem_responses(404),
)
def read(org: str, session: SessionDep) -> PublisherPolicyPublic:
    return _public(publisher_policy.get_policy(session, org))


@router.put(
    "/{org}/policy",
    response_model=PublisherPolicyPublic,
    summary="Set the report disclosure window and the auditor key (the org's publishers).",
    responses=problem_responses(403, 404, 422),
)
def update(
    org: str, body: PublisherPolicyUpdate, principal: Publisher, session: SessionDep, now: NowDep
) -> PublisherPolicyPublic:
    view = publisher_policy.set_policy(
        session,
        principal,
        org,
        report_disclosure_days=body.report_disclosure_days,
        # Left out: keep the key; an empty string: remove it.
        auditor_key=(body.auditor_key or None)
        if "auditor_key" in body.model_fields_set
        else publisher_policy.KEEP,
        now=now,
    )
    return _public(view)
