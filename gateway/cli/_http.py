"""HTTP plumbing for CLI commands that talk to a gateway: options, client, problem errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
import httpx

from gateway.errors import GatewayError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_GATEWAY = "http://127.0.0.1:8000"


class RemoteError(GatewayError):
    """The gateway answered with a problem; ``code`` is the server's stable code."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # per-instance: the server's code
        self.status = status  # type: ignore[misc]


def gateway_options(func: F) -> F:
    """`--gateway` and `--token`, defaulting to $TIERGATE_GATEWAY and $TIERGATE_TOKEN."""
    func = click.option(
        "--token",
        default=None,
        help="API token (default: $TIERGATE_TOKEN).",
    )(func)
    func = click.option(
        "--gateway",
        default=None,
        metavar="URL",
        help=f"Gateway URL (default: $TIERGATE_GATEWAY or {DEFAULT_GATEWAY}).",
    )(func)
    return func


def api_client(gateway: str | None, token: str | None, *, timeout: float = 60.0) -> httpx.Client:
    base = gateway or os.environ.get("TIERGATE_GATEWAY") or DEFAULT_GATEWAY
    secret = token or os.environ.get("TIERGATE_TOKEN")
    headers = {"User-Agent": "tiergate-cli"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return httpx.Client(base_url=base.rstrip("/"), headers=headers, timeout=timeout)


def raise_for_problem(response: httpx.Response, what: str) -> None:
    """Turn an error response into one clear line: what failed, the server's detail and code."""
    if response.is_success:
        return
    try:
        body = response.json()
        detail = str(body.get("detail") or body.get("title") or response.reason_phrase)
        code = str(body.get("code") or "http_error")
    except ValueError:
        detail, code = response.text[:200] or response.reason_phrase, "http_error"
    raise RemoteError(f"{what}: {detail}", code=code, status=response.status_code)


def get_json(client: httpx.Client, path: str, what: str, **kwargs: Any) -> Any:
    try:
        response = client.get(path, **kwargs)
    except httpx.TransportError as exc:
        raise RemoteError(
            f"{what}: cannot reach {client.base_url} ({exc})", code="unreachable", status=0
        ) from exc
    raise_for_problem(response, what)
    return response.json()


def send_json(client: httpx.Client, method: str, path: str, what: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise RemoteError(
            f"{what}: cannot reach {client.base_url} ({exc})", code="unreachable", status=0
        ) from exc
    raise_for_problem(response, what)
    return response.json()
