"""Releases: register (signed), upload blobs, publish, yank, list and read."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.auth.principal import Principal
from gateway.db.models import Release
from gateway.deps import NowDep, OptionalPrincipal, SessionDep, StateDep, require_scope
from gateway.problems import problem_responses
from gateway.routes._paging import set_next_link
from gateway.schemas.downloads import SignerKey
from gateway.schemas.releases import (
    BlobRef,
    FilePublic,
    ReleaseCreate,
    ReleaseCreated,
    ReleasePublic,
    ReleaseSummary,
    TierPublic,
    UploadStatus,
    YankRequest,
)
from gateway.services import aibom, catalog, evaluation_attestations, keys, releases, uploads
from gateway.storage.base import check_sha256

router = APIRouter(tags=["releases"], responses=problem_responses(401, 403, 404, 503))
Publisher = Annotated[Principal, Depends(require_scope("publish"))]


def summary(session: Session, release: Release) -> ReleaseSummary:
    tiers = releases.release_tiers(session, release)
    return ReleaseSummary(
        repo_id=release.repo_id,
        version=release.version,
        status=release.status,
        license=release.license,
        gated_tiers=[t.tier for t in tiers if t.gated],
        published_at=release.published_at,
        yank_reason=release.yank_reason,
    )


def detail(session: Session, release: Release) -> ReleasePublic:
    files = releases.release_files(session, release)
    tiers = [
        TierPublic(
            name=t.tier,
            gated=t.gated,
            manifest_digest=t.manifest_digest,
            total_size=sum(f.size for f in files if f.tier == t.tier),
            files=[
                FilePublic(path=f.path, sha256=f.sha256, size=f.size)
                for f in files
                if f.tier == t.tier
            ],
        )
        for t in releases.release_tiers(session, release)
    ]
    return ReleasePublic(
        **summary(session, release).model_dump(),
        statement_digest=release.statement_digest,
        signer_key_id=release.signer_key_id,
        terms_digest=release.terms_digest,
        approval=json.loads(release.policy_json),
        model_card=release.model_card,
        tiers=tiers,
        created_at=release.created_at,
        yanked_at=release.yanked_at,
        statement=json.loads(release.statement_envelope),
    )


def _json_bytes(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@router.post(
    "/api/releases",
    status_code=status.HTTP_201_CREATED,
    summary="Register a signed release (pending until every blob is uploaded).",
    responses=problem_responses(409, 413, 415, 422),
)
def create_release(
    body: ReleaseCreate, principal: Publisher, session: SessionDep, state: StateDep, now: NowDep
) -> ReleaseCreated:
    created = releases.create_release(
        session,
        principal,
        statement_envelope=_json_bytes(body.statement),
        bundles={tier: _json_bytes(bundle) for tier, bundle in body.bundles.items()},
        model_card=body.model_card,
        terms=body.terms,
        now=now,
        stored=state.blobs.has,
    )
    return ReleaseCreated(
        repo_id=created.release.repo_id,
        version=created.release.version,
        status=created.release.status,
        created=created.created,
        missing=[BlobRef(sha256=m.sha256, size=m.size) for m in created.missing],
    )


@router.get(
    "/api/releases",
    summary="List releases (published and yanked; pending for their org), paged by `Link`.",
)
def list_releases(
    request: Request,
    response: Response,
    viewer: OptionalPrincipal,
    session: SessionDep,
    author: Annotated[str | None, Query(max_length=64, description="Only this org.")] = None,
    search: Annotated[
        str | None, Query(max_length=161, description="Substring of the repo id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=catalog.MAX_PAGE)] = catalog.DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=512, description="From the previous page's `Link`.")
    ] = None,
) -> list[ReleaseSummary]:
    """One page, ordered by repo id then creation; `Link: <...>; rel="next"` while more remain."""
    page = catalog.page_releases(
        session, viewer, limit=limit, cursor=cursor, author=author, search=search
    )
    set_next_link(request, response, page.next_cursor)
    return [summary(session, r) for r in page.items]


@router.get("/api/releases/{org}/{name}", summary="The latest published version of a repository.")
def latest_release(
    org: str, name: str, viewer: OptionalPrincipal, session: SessionDep
) -> ReleasePublic:
    return detail(session, releases.find_release(session, f"{org}/{name}", None, viewer=viewer))


@router.get("/api/releases/{org}/{name}/{version}", summary="One version of a release.")
def get_release(
    org: str, name: str, version: str, viewer: OptionalPrincipal, session: SessionDep
) -> ReleasePublic:
    return detail(session, releases.find_release(session, f"{org}/{name}", version, viewer=viewer))


@router.get(
    "/api/releases/{org}/{name}/{version}/key",
    summary="The public key that signed a release (PEM), to verify its tiers' model.sig.",
)
def release_signer_key(
    org: str, name: str, version: str, viewer: OptionalPrincipal, session: SessionDep
) -> SignerKey:
    release = releases.find_release(session, f"{org}/{name}", version, viewer=viewer)
    record = keys.signer_key_of(session, release)
    return SignerKey(key_id=record.key_id, key_type=record.key_type, pem=record.pem)


def _aibom_response(session: Session, release: Release, document: str) -> Response:
    evaluations = evaluation_attestations.bom_evaluations(session, release)
    content, media_type = aibom.aibom_document(release, document, evaluations)
    return Response(
        content,
        media_type=media_type,
        headers={
            "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
            "Content-Disposition": f'inline; filename="{document}"',
        },
    )


def _aibom_doc(document: str) -> dict[str, Any]:
    """The 200 response as served: the standard's own media type (what schema checkers and
    clients see in Content-Type), a JSON object."""
    media_type = aibom.AIBOM_MEDIA_TYPES[document]
    return {
        "content": {media_type: {"schema": {"type": "object"}}},
        "description": f"The document ({media_type}).",
    }


@router.get(
    "/api/releases/{org}/{name}/{version}/aibom.spdx.json",
    summary="The release's AI bill of materials, SPDX 3.0.1 JSON-LD (AI and Dataset profiles).",
    response_class=Response,
    responses={200: _aibom_doc(aibom.SPDX_FILE)},
)
def release_aibom_spdx(
    org: str, name: str, version: str, viewer: OptionalPrincipal, session: SessionDep
) -> Response:
    release = releases.find_release(session, f"{org}/{name}", version, viewer=viewer)
    return _aibom_response(session, release, aibom.SPDX_FILE)


@router.get(
    "/api/releases/{org}/{name}/{version}/aibom.cdx.json",
    summary="The release's AI bill of materials, CycloneDX 1.6 ML-BOM (JSON, with modelCard).",
    response_class=Response,
    responses={200: _aibom_doc(aibom.CYCLONEDX_FILE)},
)
def release_aibom_cyclonedx(
    org: str, name: str, version: str, viewer: OptionalPrincipal, session: SessionDep
) -> Response:
    release = releases.find_release(session, f"{org}/{name}", version, viewer=viewer)
    return _aibom_response(session, release, aibom.CYCLONEDX_FILE)


@router.post(
    "/api/releases/{org}/{name}/{version}/publish",
    summary="Make a pending release visible once every blob is stored and verified.",
    responses=problem_responses(409),
)
def publish_release(
    org: str,
    name: str,
    version: str,
    principal: Publisher,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
) -> ReleasePublic:
    release = releases.publish_release(
        session, principal, f"{org}/{name}", version, now=now, stored=state.blobs.has
    )
    return detail(session, release)


@router.post(
    "/api/releases/{org}/{name}/{version}/yank",
    summary="Hide a release from new downloads, saying why (once: 409 when already yanked).",
    responses=problem_responses(409, 413, 415, 422),
)
def yank_release(
    org: str,
    name: str,
    version: str,
    body: YankRequest,
    principal: Publisher,
    session: SessionDep,
    now: NowDep,
) -> ReleasePublic:
    release = releases.yank_release(
        session, principal, f"{org}/{name}", version, reason=body.reason, now=now
    )
    return detail(session, release)


def _upload_status(progress: uploads.UploadProgress) -> UploadStatus:
    return UploadStatus(
        sha256=progress.sha256,
        size=progress.size,
        offset=progress.offset,
        complete=progress.complete,
    )


@router.get(
    "/api/uploads/{sha256}",
    summary="How much of a blob your org has sent (resume point of an upload).",
    responses=problem_responses(400),
)
def upload_status(
    sha256: str, principal: Publisher, session: SessionDep, state: StateDep
) -> UploadStatus:
    """`complete` only once your org sent the bytes: a blob stored for another org still has
    to be uploaded (and is then deduplicated). At `offset == size` without `complete`, send an
    empty chunk at that offset to finish."""
    return _upload_status(uploads.upload_status(session, state.blobs, principal, sha256))


@router.patch(
    "/api/uploads/{sha256}",
    summary="Append a chunk at `Upload-Offset`; the last chunk verifies the sha256.",
    responses=problem_responses(400, 409, 413, 422),
)
async def upload_chunk(
    sha256: str,
    request: Request,
    principal: Publisher,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
    upload_offset: Annotated[int, Header(alias="Upload-Offset", ge=0)],
) -> UploadStatus:
    # Refused before the body is read: a stranger's chunk costs no bandwidth or memory.
    check_sha256(sha256)
    await run_in_threadpool(releases.expected_blob_size, session, principal, sha256)
    chunk = await request.body()  # bounded by the upload body limit
    progress = await run_in_threadpool(
        partial(
            uploads.receive_chunk,
            session,
            state.blobs,
            principal,
            sha256,
            offset=upload_offset,
            chunk=chunk,
            now=now,
        )
    )
    return _upload_status(progress)
