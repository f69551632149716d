"""Hugging Face Hub compatible read paths, so `huggingface_hub` and `transformers` work unchanged.

Registered last: `/{org}/{name}/resolve/...` has the shape of a catch-all. Open tiers are
served directly; weight files of gated tiers answer 302 to an expiring link (absolute
`Location`), carrying the metadata (`X-Repo-Commit`, `X-Linked-Etag`, `X-Linked-Size`) on the
redirect itself because clients read it there instead of following cross-host redirects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.auth.principal import Principal
from gateway.deps import NowDep, OptionalPrincipal, Public, SessionDep, StateDep
from gateway.ledger.events import Actor, record_event
from gateway.problems import problem_responses
from gateway.routes._files import (
    base_url_of,
    check_raw_path,
    file_headers,
    file_response,
    in_session,
)
from gateway.routes._paging import next_link, set_next_link
from gateway.schemas.downloads import HubModelInfo, HubTreeEntry
from gateway.services import catalog, downloads, hub, links
from gateway.services.downloads import EntryNotFound, ServedFile, TierRef
from gateway.streaming import ByteRange, select_range

router = APIRouter(tags=["hub"], responses=problem_responses(401, 403, 404, 503))

# Files big enough to be worth a link (and a budget); small metadata is served in place.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".msgpack", ".h5")
_LFS_POINTER_SIZE = 134


def is_weight_file(file: ServedFile) -> bool:
    return file.path.endswith(WEIGHT_SUFFIXES) or file.size >= 10 << 20


@router.get(
    "/api/models",
    summary="Hub: list repositories (latest published version, open tier), paged by `Link`.",
)
def list_models(
    request: Request,
    response: Response,
    viewer: OptionalPrincipal,
    session: SessionDep,
    author: Annotated[str | None, Query(max_length=64)] = None,
    search: Annotated[str | None, Query(max_length=161)] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    full: bool = False,
) -> list[HubModelInfo]:
    """What `HfApi().list_models(author=..., search=...)` reads.

    ``limit`` is capped at one page (`huggingface_hub` follows the `Link: rel="next"` header
    and stops by itself after its own limit); ``full`` adds each model's files.
    """
    items, next_cursor = hub.list_models(
        session, viewer, limit=limit, cursor=cursor, author=author, search=search, full=full
    )
    set_next_link(request, response, next_cursor)
    return items


@router.get(
    "/api/models/{org}/{name}",
    summary="Hub: model info of the default revision (410 when every version is yanked).",
    responses=problem_responses(410),
)
def model_info(org: str, name: str, viewer: OptionalPrincipal, session: SessionDep) -> HubModelInfo:
    return hub.model_info(session, f"{org}/{name}", None, viewer=viewer)


@router.get(
    "/api/models/{org}/{name}/revision/{revision}",
    summary="Hub: model info of a revision (`main`, `optimized`, `<version>[-<tier>]`, commit).",
    responses=problem_responses(410),
)
def model_info_revision(
    org: str, name: str, revision: str, viewer: OptionalPrincipal, session: SessionDep
) -> HubModelInfo:
    return hub.model_info(session, f"{org}/{name}", revision, viewer=viewer)


def _tree_entries(files: list[ServedFile], prefix: str, recursive: bool) -> list[HubTreeEntry]:
    base = f"{prefix.rstrip('/')}/" if prefix else ""
    entries: dict[str, HubTreeEntry] = {}
    for file in files:
        if not file.path.startswith(base):
            continue
        rest = file.path[len(base) :]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            folder = base + "/".join(parts[:depth])
            if depth == 1 or recursive:
                entries.setdefault(
                    folder, HubTreeEntry(type="directory", path=folder, oid="0" * 40, size=0)
                )
            if not recursive:
                break
        if len(parts) == 1 or recursive:
            entries[file.path] = HubTreeEntry(
                type="file",
                path=file.path,
                oid=file.sha256[:40],
                size=file.size,
                lfs={"oid": file.sha256, "size": file.size, "pointerSize": _LFS_POINTER_SIZE},
            )
    return [entries[key] for key in sorted(entries)]


@router.get(
    "/api/models/{org}/{name}/tree/{revision}",
    summary="Hub: list files of a revision (`recursive`, paginated by `cursor` + Link header).",
)
@router.get(
    "/api/models/{org}/{name}/tree/{revision}/{path:path}",
    operation_id="tree_folder",
    summary="Hub: list files under a folder of a revision.",
)
def tree(
    org: str,
    name: str,
    revision: str,
    request: Request,
    viewer: OptionalPrincipal,
    session: SessionDep,
    path: str = "",
    recursive: bool = False,
    cursor: int = 0,
    limit: int = catalog.MAX_PAGE,
) -> Response:
    ref = downloads.resolve_revision(session, f"{org}/{name}", revision, viewer=viewer)
    if path:
        downloads.check_file_path(path)
    entries = _tree_entries(downloads.tier_files(session, ref), path, recursive)
    if path and not entries:
        raise EntryNotFound(
            f"{ref.release.repo_id}@{revision} has no folder {path!r}", commit=ref.commit
        )
    limit = max(1, min(limit, catalog.MAX_PAGE))
    start = max(0, cursor)
    page = entries[start : start + limit]
    headers: dict[str, str] = {"X-Repo-Commit": ref.commit}
    if start + limit < len(entries):
        headers["Link"] = next_link(request, cursor=start + limit, limit=limit)
    body: list[dict[str, Any]] = [e.model_dump(exclude_none=True) for e in page]
    return JSONResponse(body, headers=headers)


def _record_download(
    session: Session,
    principal: Principal | None,
    ref: TierRef,
    file: ServedFile,
    byte_range: ByteRange,
    now: datetime,
) -> None:
    record_event(
        session,
        action="download.file",
        actor=Actor.of(principal),
        resource=f"release:{ref.release.repo_id}@{ref.release.version}",
        now=now,
        org_id=ref.release.org_id,
        fields={
            "tier": ref.tier.tier,
            "path": file.path,
            "range": byte_range.content_range if byte_range.partial else None,
            "bytes": byte_range.length,
        },
    )


@router.head(
    "/{org}/{name}/resolve/{revision}/{path:path}",
    operation_id="resolve_head",
    summary="Hub: headers of a file (`huggingface_hub` reads ETag, size and commit this way).",
    responses={302: {"description": "Redirect to an expiring link"}, **problem_responses(400, 416)},
    response_class=Response,
    dependencies=[Public],
)
@router.get(
    "/{org}/{name}/resolve/{revision}/{path:path}",
    operation_id="resolve",
    summary="Hub: a file of a revision; gated weight files redirect (302) to an expiring link.",
    responses={302: {"description": "Redirect to an expiring link"}, **problem_responses(400, 416)},
    response_class=Response,
)
async def resolve(
    org: str,
    name: str,
    revision: str,
    path: str,
    request: Request,
    viewer: OptionalPrincipal,
    state: StateDep,
    now: NowDep,
) -> Response:
    check_raw_path(request)
    downloads.check_file_path(path)
    method = request.method
    base_url = base_url_of(request, state)

    def decide(session: Session) -> Response | tuple[TierRef, ServedFile, ByteRange]:
        ref = downloads.resolve_revision(session, f"{org}/{name}", revision, viewer=viewer)
        hub.check_not_yanked(ref.release)
        downloads.read_access(session, viewer, ref, now=now)
        file = downloads.find_file(session, ref, path)
        if ref.tier.gated and is_weight_file(file):
            issued = links.issue_link(
                session,
                viewer,
                ref,
                file.path,
                keyring=state.keyring,
                settings=state.settings,
                base_url=base_url,
                now=now,
            )
            headers = file_headers(ref, file)
            headers.pop("Content-Disposition")
            headers["Cache-Control"] = "no-store"
            return RedirectResponse(issued.url, status_code=302, headers=headers)
        byte_range = select_range(
            request.headers.get("range"),
            request.headers.get("if-range"),
            size=file.size,
            etag=file.sha256,
        )
        if method == "GET":
            _record_download(session, viewer, ref, file, byte_range, now)
        return ref, file, byte_range

    decided = await run_in_threadpool(in_session, state, decide)
    if isinstance(decided, Response):
        return decided
    ref, file, byte_range = decided
    return file_response(state, ref, file, byte_range, method=method)
