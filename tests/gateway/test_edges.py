"""Issue #14 item 7: inputs at the edge that used to reach the database or ``int()`` unbounded."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.streaming import RangeNotSatisfiable, select_range
from tests.conftest import Account
from tests.gateway.download_fixtures import (  # noqa: F401 (fixtures)
    PublishedRelease,
    built_release,
    published_release,
)
from tests.web.conftest import csrf_of, set_password, sign_in

# 2**31 is past PostgreSQL's int4 id columns: schemathesis found it answering 503 "database
# unavailable" there (DataError: integer out of range) while SQLite answered 404.
HUGE_IDS = (2**31, 2**63, 2**64, 10**30)
_API_PREFIXES = ("/api/", "/v1/", "/log/", "/oauth/", "/dl/")


def int_path_routes(app: FastAPI) -> Iterator[tuple[str, str, list[str]]]:
    """(method, path, int path params) of every route, read from the app's route table."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x: nested routers
    except ImportError:  # pragma: no cover (older FastAPI: a flat list of APIRoute)
        from fastapi.routing import APIRoute

        contexts: list[Any] = [r for r in app.routes if isinstance(r, APIRoute)]
    else:
        contexts = list(iter_route_contexts(app.routes))
    for ctx in contexts:
        route = getattr(ctx, "original_route", ctx)
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        ints = [p.name for p in dependant.path_params if p.field_info.annotation is int]
        for method in sorted(ctx.methods or ()):
            if ints and method != "HEAD":
                yield method, ctx.path, ints


def fill(path: str, ints: list[str], value: int) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return str(value) if name in ints else "x"

    return re.sub(r"\{([^}]+)\}", one, path)


def test_ids_beyond_bigint_are_refused_on_every_route(
    app: FastAPI, client: TestClient, make_account: Callable[..., Account], engine: Engine
) -> None:
    admin = make_account("root", "admin")
    set_password(engine, "root")
    sign_in(client, "root")
    csrf = csrf_of(client.get("/account").text)
    routes = list(int_path_routes(app))
    # The walk must see the routes the issue named (tokens, requests, grants, their pages).
    paths = {path for _, path, _ in routes}
    assert {"/api/tokens/{token_id}", "/api/access/grants/{grant_id}"} <= paths
    assert "/review/requests/{request_id}/approve" in paths
    assert len(routes) >= 11
    for method, path, ints in routes:
        # Row ids start at 1; log indices at 0.
        zero = (0,) if all(name.endswith("_id") for name in ints) else ()
        for value in (*HUGE_IDS, -1, *zero):
            url = fill(path, ints, value)
            if path.startswith(_API_PREFIXES):
                body: dict[str, Any] = {"json": {"reason": "x"}} if method == "POST" else {}
                response = client.request(method, url, headers=admin.headers, **body)
            else:
                data = {"csrf_token": csrf, "reason": "x"}
                response = client.request(method, url, data=data, follow_redirects=False)
            assert response.status_code in (404, 422), (method, url, response.text[:300])
            assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "9" * 5000 + "-",
        "bytes=" + "1" * 20 + "-" + "2" * 30,
        "bytes=-" + "0" * 5000 + "1",
        "bytes=" + "0" * 4999 + "7-",
    ],
)
def test_range_with_thousands_of_digits_is_not_a_500(header: str) -> None:
    size = 100
    try:
        chosen = select_range(header, None, size=size, etag="e")
    except RangeNotSatisfiable:
        assert not header.startswith("bytes=-")
        return
    assert 0 <= chosen.start < chosen.stop <= size


def test_range_with_thousands_of_digits_on_a_public_download_is_416(
    client: TestClient,
    published_release: PublishedRelease,  # noqa: F811
) -> None:
    url = f"/{published_release.repo_id}/resolve/main/config.json"
    assert client.get(url).status_code == 200
    response = client.get(url, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert response.status_code == 416, response.text
    assert response.json()["code"] == "range_not_satisfiable"


def test_range_digits_are_ascii_only() -> None:
    # ``int()`` reads other scripts' digits; a Range header does not: ignored, whole file.
    chosen = select_range("bytes=\u0661\u0662-", None, size=100, etag="e")
    assert (chosen.start, chosen.stop, chosen.partial) == (0, 100, False)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_token_refs_beyond_bigint_are_not_found(engine: Engine) -> None:
    from sqlmodel import Session

    from gateway.errors import NotFound
    from gateway.services.accounts import find_token_id

    with Session(engine) as session:
        for ref in (str(2**31), str(2**63), "9" * 5000, "0", "\u00b2"):
            with pytest.raises(NotFound):
                find_token_id(session, ref)
