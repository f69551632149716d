"""Report pages: a model's flaw and bias reports the viewer may see, and a form to file one.

Everything here is `gateway.services.reports` (the same as `POST /api/reports`): the page
shows the service's verification statement ("genuine output of ..., logged call N" with a
link to the log entry and its proof, or "not verified: why").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import Response
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep
from gateway.errors import GatewayError
from gateway.services import reports
from gateway.services.catalog import current_release
from gateway.services.detection import DetectionRuntime
from gateway.web.common import page_router
from gateway.web.csrf import CsrfChecked
from gateway.web.render import render
from gateway.web.sessions import SignedIn, ViewerDep

router = page_router()


def _context(
    session: Session, principal: Principal | None, repo_id: str, now: datetime
) -> dict[str, object]:
    release = current_release(session, repo_id, principal)  # 404 for a model one cannot see
    return {
        "title": f"Reports on {repo_id}",
        "repo_id": release.repo_id,
        "version": release.version,
        "categories": reports.CATEGORIES,
        "reports": list(reversed(reports.list_reports(session, principal, repo_id, now))),
        "form": {"category": "bias", "description": "", "quoted_output": "", "version": ""},
    }


@router.get("/models/{org}/{name}/reports")
def report_list(
    request: Request, org: str, name: str, viewer: ViewerDep, session: SessionDep, now: NowDep
) -> Response:
    principal = viewer.principal if viewer else None
    return render(request, "reports.html", _context(session, principal, f"{org}/{name}", now))


@router.post("/models/{org}/{name}/reports", dependencies=[CsrfChecked])
def report_submit(
    request: Request,
    org: str,
    name: str,
    viewer: SignedIn,
    session: SessionDep,
    now: NowDep,
    category: Annotated[str, Form(max_length=32)],
    description: Annotated[str, Form(max_length=reports.MAX_DESCRIPTION_CHARS)],
    quoted_output: Annotated[str, Form(max_length=reports.MAX_QUOTE_CHARS)] = "",
    version: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    principal = viewer.principal
    repo_id = f"{org}/{name}"
    context = _context(session, principal, repo_id, now)
    runtime: DetectionRuntime = request.app.state.detection
    status = 201
    try:
        made = reports.submit_report(
            session,
            principal,
            runtime,
            model=f"{repo_id}@{version}" if version else repo_id,
            category=category,
            description=description,
            quoted_output=quoted_output or None,
            call_id=None,
            limits=reports.ReportLimits.from_settings(request.app.state.gateway.settings),
            client_address=request.client.host if request.client else "unknown",
            now=now,
        )
        context = {**_context(session, principal, repo_id, now), "submitted": made}
    except GatewayError as exc:
        context["error"] = exc.message
        context["form"] = {
            "category": category,
            "description": description,
            "quoted_output": quoted_output,
            "version": version,
        }
        status = exc.status
    return render(request, "reports.html", context, status=status)
