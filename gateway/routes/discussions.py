"""Hugging Face Hub compatible discussion routes: a discussion is a flaw or bias report.

`HfApi(endpoint=GATEWAY).create_discussion(repo_id, title, description=...)`,
`get_repo_discussions(repo_id)`, `get_discussion_details(repo_id, num)` and
`comment_discussion(repo_id, num, comment)` work unchanged;
the mapping (title prefix -> category, fenced block -> quoted output) is
:mod:`gateway.services.discussions`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth.principal import Principal
from gateway.deps import NowDep, OptionalPrincipal, RowId, SessionDep, require_scope
from gateway.problems import problem_responses
from gateway.services import discussions
from gateway.services.detection import DetectionRuntime
from gateway.services.reports import ReportLimits

router = APIRouter(tags=["hub"], responses=problem_responses(401, 404, 503))
Reader = Annotated[Principal, Depends(require_scope("read"))]
PREFIX = "/api/models/{org}/{name}/discussions"


class DiscussionCreate(BaseModel):
    """The body `HfApi.create_discussion` posts."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    title: str = Field(max_length=400)
    # With the title, within the report description limit (so a valid body is never a 413).
    description: str = Field(default="", max_length=19_000)
    pull_request: bool = Field(default=False, alias="pullRequest")


def _runtime(request: Request) -> DetectionRuntime:
    runtime: DetectionRuntime = request.app.state.detection
    return runtime


def _limits(request: Request) -> ReportLimits:
    return ReportLimits.from_settings(request.app.state.gateway.settings)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    PREFIX,
    summary="Hub: open a discussion, filed as a report verified against the log.",
    responses=problem_responses(403, 409, 413, 422, 429),
)
def create(
    request: Request,
    org: str,
    name: str,
    body: DiscussionCreate,
    principal: Reader,
    session: SessionDep,
    now: NowDep,
    runtime: Annotated[DetectionRuntime, Depends(_runtime)],
) -> dict[str, Any]:
    return discussions.create_discussion(
        session,
        principal,
        runtime,
        repo_id=f"{org}/{name}",
        title=body.title,
        description=body.description,
        pull_request=body.pull_request,
        limits=_limits(request),
        client_address=_address(request),
        now=now,
    )


@router.get(
    PREFIX,
    summary="Hub: the repository's discussions the caller may see, newest first, paged by `p`.",
    responses=problem_responses(422),
)
def list_page(
    org: str,
    name: str,
    principal: OptionalPrincipal,
    session: SessionDep,
    now: NowDep,
    p: Annotated[int, Query(ge=0, le=100_000)] = 0,
    status: Literal["open", "closed", "all"] | None = None,
    author: Annotated[str | None, Query(max_length=64)] = None,
    type: Literal["discussion", "pull_request", "all"] | None = None,
) -> dict[str, Any]:
    return discussions.list_discussions(
        session,
        principal,
        f"{org}/{name}",
        page=p,
        status=status,
        author=author,
        kind=type,
        now=now,
    )


@router.get(PREFIX + "/{num}", summary="Hub: one discussion with its events.")
def details(
    org: str, name: str, num: RowId, principal: OptionalPrincipal, session: SessionDep, now: NowDep
) -> dict[str, Any]:
    return discussions.discussion_details(session, principal, f"{org}/{name}", num, now)


class DiscussionComment(BaseModel):
    """The body `HfApi.comment_discussion` posts (its length is the service's rule: 413)."""

    model_config = ConfigDict(extra="ignore")

    comment: str


@router.post(
    PREFIX + "/{num}/comment",
    summary="Hub: comment on a discussion (a report comment, logged by digest).",
    responses=problem_responses(413, 422, 429),
)
def comment(
    request: Request,
    org: str,
    name: str,
    num: RowId,
    body: DiscussionComment,
    principal: Reader,
    session: SessionDep,
    now: NowDep,
) -> dict[str, Any]:
    return discussions.comment_discussion(
        session,
        principal,
        f"{org}/{name}",
        num,
        comment=body.comment,
        limits=_limits(request),
        client_address=_address(request),
        now=now,
    )


@router.post(
    PREFIX + "/{num}/{action}",
    summary="Hub: status and title changes are refused (a report has a lifecycle).",
    responses=problem_responses(400),
)
def refuse(
    org: str,
    name: str,
    num: RowId,
    action: Literal["status", "title", "merge"],
    principal: Reader,
    session: SessionDep,
    now: NowDep,
) -> None:
    discussions.refuse_action(session, principal, f"{org}/{name}", num, action, now)
