"""Gated access for developers: the terms and fields of a tier, how to sign, requests and grants."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from gateway.db.models import AccessRequest, Grant, Release, User
from gateway.deps import NowDep, SessionDep, StateDep
from gateway.errors import GatewayError
from gateway.services import access, access_policy, releases
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


class Names:
    """Small per-page caches of releases and usernames for listing rows."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._releases: dict[int, Release] = {}
        self._users: dict[int, str] = {}

    def release(self, release_id: int) -> Release:
        if release_id not in self._releases:
            row = self.session.get(Release, release_id)
            assert row is not None
            self._releases[release_id] = row
        return self._releases[release_id]

    def user(self, user_id: int | None) -> str:
        if user_id is None:
            return "policy"
        if user_id not in self._users:
            row = self.session.get(User, user_id)
            self._users[user_id] = row.username if row else f"user-{user_id}"
        return self._users[user_id]


def request_rows(names: Names, rows: list[AccessRequest]) -> list[dict[str, object]]:
    return [
        {
            "row": r,
            "release": names.release(r.release_id),
            "requester": names.user(r.user_id),
            "decided_by": names.user(r.decided_by) if r.decided_at else None,
            "fields": json.loads(r.fields_json),
        }
        for r in rows
    ]


def grant_rows(names: Names, rows: list[Grant], now: object) -> list[dict[str, object]]:
    return [
        {
            "row": g,
            "release": names.release(g.release_id),
            "grantee": names.user(g.user_id),
            "state": access.grant_state(g, now),  # type: ignore[arg-type]
        }
        for g in rows
    ]


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
