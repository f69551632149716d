"""Evaluation runs (`/api/evaluations/runs`) and attestations beside a release
(`/api/releases/{org}/{name}/{version}/evaluations`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from gateway.auth.principal import Principal
from gateway.deps import NowDep, OptionalPrincipal, RowId, SessionDep, require_scope
from gateway.problems import problem_responses
from gateway.schemas.evaluations import (
    AttestationDecision,
    AttestationPublic,
    RunPreregistration,
    RunPublic,
)
from gateway.services import evaluation_attestations as attestations
from gateway.services import evaluations
from gateway.services.evaluations import logged_sampling

router = APIRouter(tags=["evaluations"], responses=problem_responses(401, 503))
Generator = Annotated[Principal, Depends(require_scope("generate"))]
Reader = Annotated[Principal, Depends(require_scope("read"))]
Publisher = Annotated[Principal, Depends(require_scope("publish"))]
RunId = Annotated[str, Path(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
_RELEASE = "/api/releases/{org}/{name}/{version}/evaluations"


async def _raw_body(request: Request) -> bytes:
    """The posted envelope's bytes, unparsed (the body limit middleware has bounded them)."""
    return await request.body()


def _run(view: evaluations.RunView) -> RunPublic:
    return RunPublic(
        run_id=view.run_id,
        model=view.model,
        state=view.state,  # type: ignore[arg-type]
        preregistration_index=view.preregistration_index,
        seal_index=view.seal_index,
        samples=view.samples,
    )


def _attestation(view: attestations.AttestationView) -> AttestationPublic:
    data: dict[str, Any] = {k: getattr(view, k) for k in view.__slots__}
    return AttestationPublic(**data)


@router.post(
    "/api/evaluations/runs",
    status_code=201,
    response_model=RunPublic,
    summary="Pre-register an evaluation run: its task, bar and sampling are logged first.",
    responses=problem_responses(403, 404, 409, 422),
)
def preregister(
    body: RunPreregistration, principal: Generator, session: SessionDep, now: NowDep
) -> RunPublic:
    sampling = body.sampling
    view = evaluations.preregister_run(
        session,
        principal,
        run_id=body.run_id,
        model=body.model,
        task=body.task,
        sampling=logged_sampling(
            sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed
        ),
        documents=body.documents,
        now=now,
    )
    return _run(view)


@router.get(
    "/api/evaluations/runs/{run_id}",
    response_model=RunPublic,
    summary="A run of the caller's and its logged calls so far (what a resumed run skips).",
    responses=problem_responses(404, 422),
)
def read_run(run_id: RunId, principal: Generator, session: SessionDep) -> RunPublic:
    return _run(evaluations.get_run(session, principal, run_id))


@router.post(
    "/api/evaluations/runs/{run_id}/seal",
    response_model=RunPublic,
    summary="Seal a run: log the list of its calls, once.",
    responses=problem_responses(404, 409, 422),
)
def seal(run_id: RunId, principal: Generator, session: SessionDep, now: NowDep) -> RunPublic:
    return _run(evaluations.seal_run(session, principal, run_id, now))


@router.post(
    _RELEASE,
    status_code=201,
    response_model=AttestationPublic,
    summary="Store a signed evaluation attestation (DSSE, eval/v1) beside the release.",
    # The body is read raw (below), so the budget is charged before it is parsed at all.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    responses=problem_responses(404, 409, 413, 422, 429),
)
def submit(
    request: Request,
    org: str,
    name: str,
    version: str,
    envelope: Annotated[bytes, Depends(_raw_body)],
    principal: Reader,
    session: SessionDep,
    now: NowDep,
) -> AttestationPublic:
    view = attestations.submit_attestation(
        session,
        principal,
        f"{org}/{name}",
        version,
        envelope,
        now,
        limits=attestations.SubmissionLimits.from_settings(request.app.state.gateway.settings),
        client_address=request.client.host if request.client else "unknown",
    )
    return _attestation(view)


@router.get(
    _RELEASE,
    response_model=list[AttestationPublic],
    summary="The release's evaluation attestations and how each is shown.",
    responses=problem_responses(404),
)
def list_for_release(
    org: str, name: str, version: str, viewer: OptionalPrincipal, session: SessionDep
) -> list[AttestationPublic]:
    views = attestations.list_attestations(session, viewer, f"{org}/{name}", version)
    return [_attestation(v) for v in views]


@router.get(
    _RELEASE + "/{attestation_id}",
    summary="One attestation's DSSE envelope, as submitted.",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        **problem_responses(404),
    },
)
def read_envelope(
    org: str,
    name: str,
    version: str,
    attestation_id: RowId,
    viewer: OptionalPrincipal,
    session: SessionDep,
) -> Response:
    data = attestations.attestation_envelope(
        session, viewer, f"{org}/{name}", version, attestation_id
    )
    return Response(data, media_type="application/json")


@router.post(
    _RELEASE + "/{attestation_id}/decision",
    response_model=AttestationPublic,
    summary="The publisher accepts or rejects a community attestation (logged).",
    responses=problem_responses(403, 404, 409, 422),
)
def decide(
    org: str,
    name: str,
    version: str,
    attestation_id: RowId,
    body: AttestationDecision,
    principal: Publisher,
    session: SessionDep,
    now: NowDep,
) -> AttestationPublic:
    view = attestations.decide_attestation(
        session,
        principal,
        f"{org}/{name}",
        version,
        attestation_id,
        decision=body.decision,
        now=now,
    )
    return _attestation(view)
