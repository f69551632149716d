"""Gated access for developers: the terms and fields of a tier, how to sign, requests and grants."""

from __future__ import annotations

import shlex
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from gateway.db.models import Release
from gateway.deps import NowDep, SessionDep, StateDep
from gateway.errors import GatewayError
from gateway.services import access, access_policy, releases
from gateway.web._access_rows import Names, grant_rows, request_rows
from gateway.web.common import page_router
from gateway.web.csrf import CsrfChecked
from gateway.web.render import render
from gateway.web.sessions import SignedIn
from licensing.errors import LicensingError

router = page_router()
_DONE = {
    "approved": "Access granted: the tier's policy approved your request.",
    "pending": "Request submitted: the publisher will review it.",
    "denied": "The tier's policy refused this request; the reason is below.",
}


@router.get("/access")
def my_access(request: Request, viewer: SignedIn, session: SessionDep, now: NowDep) -> Response:
    principal = viewer.principal
    names = Names(session)
    context = {
        "title": "My access",
        "requests": request_rows(names, access.list_requests(session, principal, review=False)),
        "grants": grant_rows(names, access.list_grants(session, principal, review=False), now),
        "done": _DONE.get(request.query_params.get("done", "")),
    }
    return render(request, "access.html", context)


def sign_command(release: Release, tier: str, fields: list[str]) -> str:
    """The CLI line that builds, signs (on the developer's machine) and submits the attestation."""
    parts = ["tiergate", "access", "request", f"{release.repo_id}@{release.version}"]
    parts += ["--tier", tier, "--key", "dev.pem"]
    for name in fields:
        parts += ["--field", f"{name}=..."]
    return shlex.join(parts)


def _request_page(
    request: Request,
    viewer: SignedIn,
    session: Session,
    now: NowDep,
    repo_id: str,
    version: str,
    tier: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    principal = viewer.principal
    release = releases.find_release(session, repo_id, version, viewer=principal)
    access.gated_tier(session, release, tier)
    _, policy = access_policy.current_policy(session, release, tier, now=now)
    names = Names(session)
    mine = [
        r
        for r in access.list_requests(session, principal, review=False)
        if r.release_id == release.id and r.tier == tier
    ]
    context = {
        "title": f"Request access: {release.repo_id} {release.version} ({tier})",
        "release": release,
        "tier": tier,
        "policy": policy,
        "command": sign_command(release, tier, [f.name for f in policy.fields]),
        "requests": request_rows(names, mine),
        "grant": access.active_grant(session, principal, release, tier, now),
        "error": error,
        "base": str(request.base_url).rstrip("/"),
    }
    return render(request, "request_access.html", context, status=status)


@router.get("/access/request/{org}/{name}/{version}/{tier}")
def request_form(
    request: Request,
    org: str,
    name: str,
    version: str,
    tier: str,
    viewer: SignedIn,
    session: SessionDep,
    now: NowDep,
) -> Response:
    return _request_page(request, viewer, session, now, f"{org}/{name}", version, tier)


@router.post("/access/request/{org}/{name}/{version}/{tier}", dependencies=[CsrfChecked])
def submit_request(
    request: Request,
    org: str,
    name: str,
    version: str,
    tier: str,
    viewer: SignedIn,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    attestation: Annotated[str, Form(max_length=1 << 20)],
) -> Response:
    limits = access.AttestationLimits.from_settings(state.settings)
    try:
        # No savepoint around it: on SQLite a SAVEPOINT opens a deferred transaction whose
        # first read pins a snapshot, and its first write then fails (SQLITE_BUSY_SNAPSHOT,
        # a 503) whenever another writer committed in between; the same use case through the
        # API reads outside a transaction. A refusal rolls back whatever it wrote instead.
        submitted = access.submit_attestation(
            session,
            viewer.principal,
            repo_id=f"{org}/{name}",
            version=version,
            tier=tier,
            envelope=attestation.strip().encode("utf-8"),
            limits=limits,
            client_address=request.client.host if request.client else "unknown",
            now=now,
        )
    except (GatewayError, LicensingError) as exc:
        session.rollback()
        # Licensing errors (bad signature, wrong subject, expired...) carry no HTTP status.
        status = exc.status if isinstance(exc, GatewayError) else 422
        return _request_page(
            request,
            viewer,
            session,
            now,
            f"{org}/{name}",
            version,
            tier,
            error=exc.message,
            status=status,
        )
    return RedirectResponse(f"/access?done={submitted.request.status}", status_code=303)
