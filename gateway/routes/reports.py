"""Flaw and bias reports: submit (`POST /api/reports`), read, list per model, move along,
link to a yank or a new version, comment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from gateway.auth.principal import Principal
from gateway.deps import NowDep, OptionalPrincipal, RowId, SessionDep, require_scope
from gateway.problems import problem_responses
from gateway.schemas.reports import (
    ReportCommentCreate,
    ReportCreate,
    ReportLinkCreate,
    ReportPublic,
    ReportStep,
)
from gateway.services import report_avid, report_lifecycle, reports
from gateway.services.detection import DetectionRuntime

router = APIRouter(prefix="/api/reports", tags=["reports"], responses=problem_responses(401, 503))
Reader = Annotated[Principal, Depends(require_scope("read"))]
Publisher = Annotated[Principal, Depends(require_scope("publish"))]


def _runtime(request: Request) -> DetectionRuntime:
    runtime: DetectionRuntime = request.app.state.detection
    return runtime


def _limits(request: Request) -> reports.ReportLimits:
    return reports.ReportLimits.from_settings(request.app.state.gateway.settings)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _public(view: reports.ReportView) -> ReportPublic:
    data: dict[str, Any] = {k: getattr(view, k) for k in view.__slots__}
    return ReportPublic(**data)


@router.post(
    "",
    status_code=201,
    response_model=ReportPublic,
    summary="Report a flaw or bias in a model; quoted output is verified against the log.",
    responses=problem_responses(403, 404, 409, 413, 422, 429),
)
def submit(
    request: Request,
    body: ReportCreate,
    principal: Reader,
    session: SessionDep,
    now: NowDep,
    runtime: Annotated[DetectionRuntime, Depends(_runtime)],
) -> ReportPublic:
    view = reports.submit_report(
        session,
        principal,
        runtime,
        model=body.model,
        category=body.category,
        description=body.description,
        quoted_output=body.quoted_output,
        call_id=body.call_id,
        limits=_limits(request),
        client_address=_address(request),
        now=now,
    )
    return _public(view)


@router.get(
    "",
    response_model=list[ReportPublic],
    summary="Reports about a model the caller may see (all, once disclosed).",
    responses=problem_responses(422),
)
def list_for_model(
    principal: OptionalPrincipal,
    session: SessionDep,
    now: NowDep,
    model: Annotated[str, Query(min_length=3, max_length=161, description="ORG/NAME")],
) -> list[ReportPublic]:
    return [_public(v) for v in reports.list_reports(session, principal, model, now)]


@router.get(
    "/{report_id}",
    response_model=ReportPublic,
    summary="One report: its reporter and the model's org, or anyone once disclosed.",
    responses=problem_responses(404),
)
def read(
    report_id: RowId, principal: OptionalPrincipal, session: SessionDep, now: NowDep
) -> ReportPublic:
    return _public(reports.get_report(session, principal, report_id, now))


@router.get(
    "/{report_id}/avid",
    summary="One report in the AVID report format (same visibility as the report).",
    responses=problem_responses(404),
)
def read_avid(
    request: Request,
    report_id: RowId,
    principal: OptionalPrincipal,
    session: SessionDep,
    now: NowDep,
) -> dict[str, Any]:
    view = reports.get_report(session, principal, report_id, now)
    return report_avid.avid_report(view, str(request.base_url))


@router.post(
    "/{report_id}/transitions",
    response_model=ReportPublic,
    summary="A lifecycle step by the model's org (triaged, accepted, fixed, disclosed, ...).",
    responses=problem_responses(403, 404, 409, 413, 422),
)
def step(
    report_id: RowId, body: ReportStep, principal: Publisher, session: SessionDep, now: NowDep
) -> ReportPublic:
    view = report_lifecycle.transition_report(
        session,
        principal,
        report_id,
        step=body.step,
        version=body.version,
        note=body.note,
        now=now,
    )
    return _public(view)


@router.post(
    "/{report_id}/links",
    response_model=ReportPublic,
    summary="Link a report to a yank of its model or to a new version (the model's org).",
    responses=problem_responses(403, 404, 409, 422),
)
def link(
    report_id: RowId,
    body: ReportLinkCreate,
    principal: Publisher,
    session: SessionDep,
    now: NowDep,
) -> ReportPublic:
    view = report_lifecycle.link_report(
        session, principal, report_id, kind=body.kind, version=body.version, now=now
    )
    return _public(view)


@router.post(
    "/{report_id}/comments",
    status_code=201,
    summary="Comment on a report the caller may read (logged by digest).",
    responses=problem_responses(404, 413, 422, 429),
)
def comment(
    request: Request,
    report_id: RowId,
    body: ReportCommentCreate,
    principal: Reader,
    session: SessionDep,
    now: NowDep,
) -> dict[str, Any]:
    return report_lifecycle.comment_report(
        session,
        principal,
        report_id,
        text=body.text,
        limits=_limits(request),
        client_address=_address(request),
        now=now,
    )
