"""Publisher review: pending requests, approve / deny / revoke, tier policies, usage chart."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from gateway.auth.principal import Principal
from gateway.db.models import (
    Role,
)
from gateway.deps import NowDep, RowId, SessionDep
from gateway.errors import Forbidden
from gateway.services import access, access_policy, releases
from gateway.services import review as review_service
from gateway.web._access_rows import Names, grant_rows, request_rows
from gateway.web.chart import bar_chart
from gateway.web.common import page_router
from gateway.web.csrf import CsrfChecked
from gateway.web.render import render
from gateway.web.sessions import SignedIn

router = page_router()
_DONE = {
    "approved": "Request approved: a grant was issued.",
    "denied": "Request denied.",
    "revoked": "Grant revoked: its links stop working at once.",
    "policy": "Policy saved as a new version.",
}
Reason = Annotated[str, Form(max_length=2000)]


def _publisher(principal: Principal) -> int:
    if principal.role is not Role.publisher or principal.org_id is None:
        raise Forbidden("only publishers review access requests")
    return principal.org_id


@router.get("/review")
def review(request: Request, viewer: SignedIn, session: SessionDep, now: NowDep) -> Response:
    principal = viewer.principal
    org_id = _publisher(principal)
    names = Names(session)
    policies = [
        {
            "release": r,
            "tier": t.tier,
            "policy": access_policy.current_policy(session, r, t.tier, now=now)[1],
        }
        for r, t in review_service.gated_tiers(session, org_id)
    ]
    pending = request_rows(
        names, access.list_requests(session, principal, review=True, status="pending")
    )
    for row in pending:
        row["checks"] = review_service.request_checks(session, row["row"], now)  # type: ignore[arg-type]
    context = {
        "title": "Review",
        "pending": pending,
        "decided": request_rows(
            names,
            [
                r
                for r in access.list_requests(session, principal, review=True)
                if r.status != "pending"
            ][-20:],
        ),
        "grants": grant_rows(names, access.list_grants(session, principal, review=True), now),
        "policies": policies,
        "chart": bar_chart(review_service.daily_counts(session, org_id, now=now)),
        "done": _DONE.get(request.query_params.get("done", "")),
    }
    return render(request, "review.html", context)


@router.post("/review/requests/{request_id}/approve", dependencies=[CsrfChecked])
def approve(request_id: RowId, viewer: SignedIn, session: SessionDep, now: NowDep) -> Response:
    _publisher(viewer.principal)
    access.approve_request(session, viewer.principal, request_id, now=now)
    return RedirectResponse("/review?done=approved", status_code=303)


@router.post("/review/requests/{request_id}/deny", dependencies=[CsrfChecked])
def deny(
    request_id: RowId, viewer: SignedIn, session: SessionDep, now: NowDep, reason: Reason
) -> Response:
    _publisher(viewer.principal)
    access.deny_request(session, viewer.principal, request_id, reason=reason, now=now)
    return RedirectResponse("/review?done=denied", status_code=303)


@router.post("/review/grants/{grant_id}/revoke", dependencies=[CsrfChecked])
def revoke(
    grant_id: RowId, viewer: SignedIn, session: SessionDep, now: NowDep, reason: Reason
) -> Response:
    _publisher(viewer.principal)
    access.revoke_grant(session, viewer.principal, grant_id, reason=reason, now=now)
    return RedirectResponse("/review?done=revoked", status_code=303)


@router.post("/review/policy/{org}/{name}/{version}/{tier}", dependencies=[CsrfChecked])
def change_policy(
    org: str,
    name: str,
    version: str,
    tier: str,
    viewer: SignedIn,
    session: SessionDep,
    now: NowDep,
    mode: Annotated[str, Form(pattern="^(auto|manual)$")],
    grant_days: Annotated[float, Form(gt=0, le=3650)],
    max_grants: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    principal = viewer.principal
    org_id = _publisher(principal)
    release = releases.find_release(session, f"{org}/{name}", version, viewer=principal)
    if release.org_id != org_id:
        raise Forbidden("only publishers of the release's org change its policy")
    access.gated_tier(session, release, tier)
    _, current = access_policy.current_policy(session, release, tier, now=now)
    access_policy.change_policy(
        session,
        principal,
        release,
        tier,
        mode=mode,
        grant_lifetime_seconds=int(grant_days * 86400),
        allow={k: list(v) for k, v in current.allow.items()},
        deny={k: list(v) for k, v in current.deny.items()},
        max_grants=int(max_grants) if max_grants.strip().isdigit() else None,
        now=now,
    )
    return RedirectResponse("/review?done=policy", status_code=303)
