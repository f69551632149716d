"""HTTP plumbing the download routes share (expiring links and the Hub's resolve path):
the public base URL, a committed transaction before bytes flow, raw-path checks, and the file
response with the headers Hub clients read."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from sqlmodel import Session
from starlette.responses import Response

from gateway.errors import DatabaseUnavailable
from gateway.services.downloads import InvalidFilePath, ServedFile, TierRef
from gateway.state import GatewayState
from gateway.streaming import BlobRangeResponse, ByteRange

__all__ = ["base_url_of", "check_raw_path", "file_headers", "file_response", "in_session"]

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
