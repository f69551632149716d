"""Expiring download links: issue one (`POST /api/links`), and serve it (`GET/HEAD /dl/...`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.auth.principal import Principal
from gateway.deps import NowDep, Public, SessionDep, StateDep, require_scope
from gateway.errors import DatabaseUnavailable
from gateway.links import LinkMalformed, LinkObject, client_network
from gateway.problems import problem_responses
from gateway.schemas.downloads import LinkCreate, LinkPublic
from gateway.services import downloads, links, ratelimit
from gateway.services.downloads import InvalidFilePath, ServedFile, TierRef
from gateway.state import GatewayState
from gateway.streaming import BlobRangeResponse, ByteRange, select_range

router = APIRouter(tags=["downloads"], responses=problem_responses(401, 403, 404, 503))
Reader = Annotated[Principal, Depends(require_scope("read"))]


def limit_links(principal: Reader, state: StateDep, now: NowDep) -> Principal:
    """Links per account per window, counted in the database (shared by every replica)."""
    limit = ratelimit.Limit(
        ratelimit.bucket_key("link-user", str(principal.user_id)),
        state.settings.rate_limit_links_per_account,
        state.settings.rate_limit_window_seconds,
    )
    ratelimit.hit(state.engine, [limit], now=now)
    return principal


LinkIssuer = Annotated[Principal, Depends(limit_links)]
T = TypeVar("T")

# Encoded separators and NUL are refused on the raw path, before any decoding can hide them.
_RAW_PATH_TRICKS = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)


def base_url_of(request: Request, state: GatewayState) -> str:
    return state.settings.public_url or str(request.base_url)


def in_session(state: GatewayState, work: Callable[[Session], T]) -> T:
    """Run ``work`` in its own committed transaction (so it is durable before bytes flow)."""
    if not state.schema.ready:
        raise DatabaseUnavailable("the database is not ready yet")
    with Session(state.engine, expire_on_commit=False) as session:
        try:
            result = work(session)
            session.commit()
            return result
        except BaseException:
            session.rollback()
            raise


def check_raw_path(request: Request) -> None:
    raw = request.scope.get("raw_path") or b""
    if _RAW_PATH_TRICKS.search(raw):
        raise InvalidFilePath("encoded slashes, backslashes and NUL are not allowed in paths")


def file_headers(ref: TierRef, file: ServedFile) -> dict[str, str]:
    """Headers every file response carries, Hub clients' metadata included."""
    name = file.path.rsplit("/", 1)[-1].replace('"', "")
    return {
        "ETag": f'"{file.sha256}"',
        "X-Linked-Etag": f'"{file.sha256}"',
        "X-Linked-Size": str(file.size),
        "X-Repo-Commit": ref.commit,
        "Content-Disposition": f'attachment; filename="{name}"',
    }


def file_response(
    state: GatewayState,
    ref: TierRef,
    file: ServedFile,
    byte_range: ByteRange,
    *,
    method: str,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    headers = file_headers(ref, file)
    headers.update(extra_headers or {})
    return BlobRangeResponse(
        blobs=state.blobs,
        sha256=file.sha256,
        byte_range=byte_range,
        headers=headers,
        send_body=method == "GET",
        content=file.content,
    )


@router.post(
    "/api/links",
    status_code=201,
    summary="Issue an expiring download link for one file of a tier the caller may read.",
    responses=problem_responses(413, 415, 422, 429),
)
def create_link(
    body: LinkCreate,
    request: Request,
    principal: LinkIssuer,
    session: SessionDep,
    state: StateDep,
    now: NowDep,
) -> LinkPublic:
    revision = f"{body.version}-{body.tier}" if body.version else body.tier
    ref = downloads.resolve_revision(session, body.repo_id, revision, viewer=principal)
    network = None
    if body.bind_network:
        network = client_network(request.client.host if request.client else None)
    issued = links.issue_link(
        session,
        principal,
        ref,
        body.path,
        keyring=state.keyring,
        settings=state.settings,
        base_url=base_url_of(request, state),
        now=now,
        ttl_seconds=body.ttl_seconds,
        network=network,
    )
    # Commit before answering: the client may use the link at once, and the budget row
    # must be visible to whichever process serves it.
    session.commit()
    obj = issued.claims.object
    return LinkPublic(
        url=issued.url,
        link_id=issued.claims.link_id,
        key_id=issued.claims.key_id,
        repo_id=obj.repo_id,
        version=obj.version,
        tier=obj.tier,
        path=obj.path,
        sha256=obj.sha256,
        size=issued.size,
        byte_budget=issued.byte_budget,
        expires_at=issued.expires_at,
        grant_id=issued.claims.grant_id,
        network=network,
    )


_LINK_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.head(
    "/dl/{org}/{name}/{version}/{tier}/{path:path}",
    operation_id="download_link_head",
    include_in_schema=False,
    dependencies=[Public],
)
@router.get(
    "/dl/{org}/{name}/{version}/{tier}/{path:path}",
    operation_id="download_link",
    summary="Download through a link: `?token=`; Range/If-Range resume; ETag is the sha256.",
    responses=problem_responses(400, 410, 416),
    dependencies=[Public],
    response_class=Response,
)
async def download_link(
    org: str,
    name: str,
    version: str,
    tier: str,
    path: str,
    request: Request,
    state: StateDep,
    now: NowDep,
    token: str | None = None,
) -> Response:
    check_raw_path(request)
    downloads.check_file_path(path)
    if not token:
        raise LinkMalformed("this URL needs its link token (?token=...)", headers=_LINK_HEADERS)
    method = request.method
    requested = LinkObject(f"{org}/{name}", version, tier, path, sha256="")
    client_host = request.client.host if request.client else None

    def check(session: Session) -> tuple[links.LinkHit, ByteRange]:
        hit = links.check_link_hit(
            session,
            token,
            requested,
            method=method,
            client_host=client_host,
            keyring=state.keyring,
            settings=state.settings,
            now=now,
        )
        byte_range = select_range(
            request.headers.get("range"),
            request.headers.get("if-range"),
            size=hit.file.size,
            etag=hit.file.sha256,
        )
        links.record_link_use(session, hit, byte_range, method=method, now=now)
        return hit, byte_range

    try:
        hit, byte_range = await run_in_threadpool(in_session, state, check)
    except Exception as exc:
        # Error answers of a link must not be cached or leak the link as a referrer either.
        headers = getattr(exc, "headers", None)
        if isinstance(headers, dict):
            headers.update(_LINK_HEADERS)
        raise
    redirect = await run_in_threadpool(presigned_redirect, state, hit, method, now)
    if redirect is not None:
        return redirect
    return file_response(
        state, hit.ref, hit.file, byte_range, method=method, extra_headers=_LINK_HEADERS
    )


def presigned_redirect(
    state: GatewayState, hit: links.LinkHit, method: str, now: datetime
) -> Response | None:
    """On an object store, send the bytes from there: 302 to a presigned URL.

    Only after every check above passed and the hit was charged and logged. The URL lives at
    most as long as the link (and the store's own cap), so it adds no lifetime to the link.
    """
    if method != "GET" or hit.file.content is not None:
        return None
    remaining = hit.claims.expires - int(now.timestamp())
    if remaining < 1:
        return None
    url = state.blobs.presigned_url(
        hit.file.sha256, expires_in=remaining, filename=hit.file.path.rsplit("/", 1)[-1]
    )
    if url is None:
        return None
    headers = {**file_headers(hit.ref, hit.file), **_LINK_HEADERS, "Location": url}
    headers.pop("Content-Length", None)
    return Response(status_code=302, headers=headers)
