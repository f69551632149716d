"""The CLI's HTTP client for a gateway: `--gateway`/`--token` options and problem+json errors.

The options read ``TIERGATE_GATEWAY`` and ``TIERGATE_TOKEN`` through click while the command
line is parsed (the entry point), never later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
import httpx

from gateway.errors import GatewayError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_GATEWAY = "http://127.0.0.1:8000"


class GatewayRequestError(GatewayError):
    """The gateway refused a call; ``code`` is the server's stable problem code."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # per instance: whatever the server said
        self.status = status  # type: ignore[misc]


def gateway_options(func: F) -> F:
    """Add `--gateway URL` and `--token T` (defaults from the environment, read by click)."""
    func = click.option(
        "--token",
        envvar="TIERGATE_TOKEN",
        default=None,
        help="API token (or $TIERGATE_TOKEN); without one the gateway answers 401 where needed.",
    )(func)
    func = click.option(
        "--gateway",
        envvar="TIERGATE_GATEWAY",
        default=DEFAULT_GATEWAY,
        show_default=True,
        metavar="URL",
        help="Gateway URL (or $TIERGATE_GATEWAY).",
    )(func)
    return func


def api_client(gateway: str, token: str | None, *, timeout: float = 30.0) -> httpx.Client:
    headers = {"User-Agent": "tiergate-cli", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=gateway.rstrip("/"), headers=headers, timeout=timeout)


def raise_for_problem(response: httpx.Response, what: str | None = None) -> None:
    """Raise the server's problem (its ``detail`` and ``code``) as one clear error line.

    ``what`` names the step that failed ("downloading model.sig") and prefixes the message.
    """
    if response.is_success:
        return
    detail, code = response.reason_phrase or "request failed", "http_error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]  # the OpenAI-shaped error of /v1/ routes
        detail = str(body.get("message") or detail)
        code = str(body.get("code") or code)
    elif isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or detail)
        code = str(body.get("code") or code)
    prefix = f"{what}: " if what else ""
    raise GatewayRequestError(
        f"{prefix}{detail} (HTTP {response.status_code})", code=code, status=response.status_code
    )


def call(
    client: httpx.Client, method: str, path: str, *, what: str | None = None, **kwargs: Any
) -> Any:
    """One request; the JSON answer, or a :class:`GatewayRequestError`."""
    return _send(client, method, path, what, **kwargs).json()


def _send(
    client: httpx.Client, method: str, url: str, what: str | None, **kwargs: Any
) -> httpx.Response:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise GatewayRequestError(
            f"cannot reach the gateway at {client.base_url}: {exc}", code="unreachable", status=0
        ) from exc
    raise_for_problem(response, what)
    return response


def iter_pages(
    client: httpx.Client,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    what: str | None = None,
    max_items: int | None = None,
) -> Iterator[Any]:
    """Every item of a paged JSON listing, following `Link: <...>; rel="next"` headers."""
    url: str | None = path
    seen = 0
    while url is not None:
        response = _send(client, "GET", url, what, params=params)
        for item in response.json():
            yield item
            seen += 1
            if max_items is not None and seen >= max_items:
                return
        # The next link carries the whole query (cursor included): send no params with it.
        url, params = response.links.get("next", {}).get("url"), None


def parse_release_ref(ref: str) -> tuple[str, str | None]:
    """``ORG/NAME[@VERSION]`` -> (repo id, version or None), by the one repo-id rule."""
    from licensing.layout import is_repo_id

    repo_id, _, version = ref.partition("@")
    if not is_repo_id(repo_id):
        raise click.BadParameter(f"expected ORG/NAME[@VERSION], got {ref!r}")
    return repo_id, version or None
