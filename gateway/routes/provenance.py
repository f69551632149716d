"""`/c2pa/v1/...`: the C2PA soft-binding resolution API; `/.well-known/...`: the C2PA root;
a release tier's Content Credential.

Public and rate-limited per client address. The paths and shapes are C2PA's Soft Binding
Resolution API; each match adds a ``tiergate`` object with the log index and inclusion proof.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.deps import NowDep, OptionalPrincipal, Public, SessionDep
from gateway.errors import UnsupportedMediaType, ValidationFailed
from gateway.problems import problem_responses
from gateway.services import detection, soft_binding
from gateway.services.provenance import MANIFEST_FORMAT, ProvenanceService
from gateway.services.release_credentials import release_credential

router = APIRouter(prefix="/c2pa/v1", tags=["content credentials"], dependencies=[Public])
well_known = APIRouter(tags=["content credentials"], dependencies=[Public])
MaxResults = Annotated[int | None, Query(alias="maxResults", ge=1, le=soft_binding.MAX_RESULTS)]


class SoftBindingQuery(BaseModel):
    alg: str = Field(max_length=200)
    value: str = Field(max_length=1024)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _charge(request: Request, session: SessionDep, now: NowDep) -> None:
    settings = request.app.state.gateway.settings
    soft_binding.charge(
        session,
        _address(request),
        per_address=settings.rate_limit_soft_binding_per_address,
        window_seconds=settings.rate_limit_window_seconds,
        now=now,
    )


Charged = Depends(_charge)


def get_provenance(request: Request) -> ProvenanceService:
    service: ProvenanceService = request.app.state.provenance
    return service


@well_known.get(
    "/.well-known/tiergate/c2pa-root.pem",
    summary="The root certificate Content Credentials from this gateway chain to (PEM).",
    response_class=Response,
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def get_c2pa_root(
    provenance: Annotated[ProvenanceService, Depends(get_provenance)],
) -> Response:
    return Response(provenance.root_pem, media_type="application/x-pem-file")


@router.get(
    "/services/supportedAlgorithms",
    summary="Soft-binding algorithms this service resolves.",
    dependencies=[Charged],
    responses=problem_responses(429),
)
def get_supported_algorithms() -> dict[str, Any]:
    return soft_binding.supported_algorithms()


@router.get(
    "/matches/byBinding",
    summary="Manifest ids whose soft binding is `value` (base64), with inclusion proofs.",
    dependencies=[Charged],
    responses=problem_responses(400, 422, 429, 503),
)
def get_matches_by_binding(
    session: SessionDep,
    alg: Annotated[str, Query(max_length=200)],
    value: Annotated[str, Query(max_length=1024)],
    max_results: MaxResults = None,
) -> dict[str, Any]:
    return soft_binding.matches_by_binding(session, alg=alg, value=value, max_results=max_results)


@router.post(
    "/matches/byBinding",
    summary="As GET, with the query in a JSON body.",
    dependencies=[Charged],
    responses=problem_responses(400, 422, 429, 503),
)
def post_matches_by_binding(
    body: SoftBindingQuery, session: SessionDep, max_results: MaxResults = None
) -> dict[str, Any]:
    return soft_binding.matches_by_binding(
        session, alg=body.alg, value=body.value, max_results=max_results
    )


@router.post(
    "/matches/byContent",
    summary="Run the watermark detector over the posted text (text/plain); the manifests of "
    "the calls it attributes, with inclusion proofs.",
    dependencies=[Charged],
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
    responses=problem_responses(400, 413, 415, 422, 429, 503),
)
async def post_matches_by_content(
    request: Request,
    session: SessionDep,
    now: NowDep,
    alg: Annotated[str | None, Query(max_length=200)] = None,
    max_results: MaxResults = None,
) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media.startswith("text/"):
        raise UnsupportedMediaType("post the text itself, as text/plain; charset=utf-8")
    # The body limit middleware has already refused (413) anything past max_body_bytes.
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("the posted text is not UTF-8") from exc
    runtime: detection.DetectionRuntime = request.app.state.detection
    result: dict[str, Any] = await run_in_threadpool(
        lambda: soft_binding.matches_by_content(
            session, runtime, text=text, alg=alg, max_results=max_results, now=now
        )
    )
    return result


@router.get(
    "/manifests/{manifest_id}",
    summary="The C2PA manifest store (application/c2pa) of a Content Credential.",
    dependencies=[Charged],
    response_class=Response,
    responses={200: {"content": {MANIFEST_FORMAT: {}}}, **problem_responses(404, 429, 503)},
)
def get_manifest(
    manifest_id: str,
    session: SessionDep,
    return_active: Annotated[bool, Query(alias="returnActiveManifest")] = True,
) -> Response:
    # The store holds one manifest, so the whole store and its active manifest coincide.
    del return_active
    return Response(soft_binding.manifest_store(session, manifest_id), media_type=MANIFEST_FORMAT)


@well_known.get(
    "/api/releases/{org}/{name}/{version}/tiers/{tier}/content-credential",
    summary="A tier's C2PA Content Credential (application/c2pa sidecar) bound to its model.sig.",
    dependencies=[Charged],
    response_class=Response,
    responses={200: {"content": {MANIFEST_FORMAT: {}}}, **problem_responses(401, 404, 429, 503)},
)
def get_release_credential(
    org: str,
    name: str,
    version: str,
    tier: str,
    viewer: OptionalPrincipal,
    session: SessionDep,
    provenance: Annotated[ProvenanceService, Depends(get_provenance)],
) -> Response:
    made = release_credential(session, provenance, viewer, f"{org}/{name}", version, tier)
    return Response(
        made.store,
        media_type=MANIFEST_FORMAT,
        headers={"Content-Disposition": f'attachment; filename="{tier}.model.sig.c2pa"'},
    )
