"""The `Link: <url>; rel="next"` header of paged listings (RFC 8288), as GitHub and the HF Hub
send it, so that clients that already walk those APIs (huggingface_hub's paginate, httpx's
``response.links``) walk ours."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from gateway.deps import gateway_state
from gateway.routes._files import base_url_of


def next_link(request: Request, **params: Any) -> str:
    """The header value pointing at this URL with ``params`` replaced; absolute URL."""
    query = request.url.include_query_params(**params).query
    # base_url_of honours the configured public URL (the gateway may sit behind a proxy).
    base = base_url_of(request, gateway_state(request)).rstrip("/")
    return f'<{base}{request.url.path}?{query}>; rel="next"'


def set_next_link(request: Request, response: Response, next_cursor: str | None) -> None:
    """Point to the next page (the same query, ``cursor`` replaced), if there is one."""
    if next_cursor is not None:
        response.headers["Link"] = next_link(request, cursor=next_cursor)
