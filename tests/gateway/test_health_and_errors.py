"""Probes, request ids and the one problem+json error shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gateway.deps import Public, rule_of

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["code"] == code
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "schema": "ok"}


def test_request_id_generated_and_echoed(client: TestClient) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 16
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    # Anything that could inject into logs or headers is replaced, not echoed.
    hostile = client.get("/healthz", headers={"X-Request-ID": "a b\tc" * 30})
    assert hostile.headers["x-request-id"] != "a b\tc" * 30


def test_unknown_route_is_problem_json(client: TestClient) -> None:
    assert_problem(client.get("/api/nope"), 404, "not_found")


def test_method_not_allowed_is_problem_json(client: TestClient) -> None:
    assert_problem(client.put("/healthz"), 405, "method_not_allowed")


def test_unexpected_exception_never_leaks_a_traceback(app: FastAPI) -> None:
    router = APIRouter()

    @router.get("/boom", dependencies=[Public])
    def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert "RuntimeError" not in body["detail"]


def test_every_route_declares_an_authorization_rule(app: FastAPI) -> None:
    """Regression: on FastAPI >= 0.16x `app.routes` holds included routers, not APIRoutes,
    and this test silently checked nothing; walk the effective routes instead."""
    from fastapi.routing import iter_route_contexts

    def rules(dependant: Any) -> list[str]:
        found = [rule for dep in dependant.dependencies if (rule := rule_of(dep.call))]
        for dep in dependant.dependencies:
            found.extend(rules(dep))
        return found

    routes = [ctx for ctx in iter_route_contexts(app.routes) if isinstance(ctx.route, APIRoute)]
    assert len(routes) > 80  # every API route, page and probe: this check cannot be empty
    missing = [
        f"{sorted(ctx.methods or ())} {ctx.path}"
        for ctx in routes
        if not rules(ctx.route.dependant)
    ]
    assert missing == []


def test_openapi_documents_problem_responses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "Problem" in schema["components"]["schemas"]
    whoami = schema["paths"]["/api/whoami"]["get"]["responses"]
    assert "401" in whoami
    assert "application/problem+json" in whoami["401"]["content"]
    create = schema["paths"]["/api/tokens"]["post"]["responses"]
    assert {"401", "413", "415", "422"} <= create.keys()


def assert_openai_error(response: Any, status: int, code: str, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= error.keys()
    assert (error["code"], error["type"]) == (code, kind)
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return error


def test_v1_answers_openai_error_bodies_everywhere_else_problem_json(client: TestClient) -> None:
    """The OpenAI SDKs read `error.message`; problem+json under /v1 showed only a status."""
    assert_openai_error(client.get("/v1/models"), 401, "unauthenticated", "authentication_error")
    assert_openai_error(client.get("/v1/nope"), 404, "not_found", "not_found_error")
    # Errors written by the ASGI middleware (before any route runs) take the same shape.
    sent = client.post("/v1/completions", content=b"{}", headers={"Content-Type": "text/plain"})
    assert_openai_error(sent, 415, "unsupported_media_type", "invalid_request_error")
    assert_problem(client.get("/api/whoami"), 401, "unauthenticated")


def test_openai_error_names_the_parameter(client: TestClient, make_account: Any) -> None:
    dev = make_account("dev")
    response = client.post(
        "/v1/completions", json={"model": "acme/x", "n": "many"}, headers=dev.headers
    )
    error = assert_openai_error(response, 422, "validation_error", "invalid_request_error")
    assert error["param"] == "n"


def test_openapi_documents_openai_errors_under_v1(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/completions"]["post"]["responses"]
    assert "OpenAIError" in responses["404"]["content"]["application/json"]["schema"]["$ref"]


def test_api_docs_load_their_assets_from_the_gateway_not_a_cdn(client: TestClient) -> None:
    """Regression: /docs was blank offline because Swagger UI came from a CDN."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert sources, html.text
        for url in sources:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            if url.startswith("/docs-assets/"):
                asset = client.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 1000


def test_a_value_the_database_refuses_is_422_not_503(app: FastAPI) -> None:
    """Regression: an id past PostgreSQL's int4 gave 503 "database unavailable" (retry!)."""
    from sqlalchemy.exc import DataError

    router = APIRouter()

    @router.get("/out-of-range", dependencies=[Public])
    def out_of_range() -> None:
        raise DataError("SELECT ...", {}, Exception("integer out of range"))

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        body = assert_problem(client.get("/out-of-range"), 422, "validation_error")
    assert "integer out of range" not in body["detail"]
