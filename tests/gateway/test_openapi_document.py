"""The OpenAPI document says what the server does (issue #14 item 7; schemathesis found each)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

BEARER = {"HTTPBearer": []}


def _operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = schema["paths"][path][method]
    return operation


def test_public_routes_declare_no_token_and_optional_ones_declare_it_optional(
    client: TestClient,
) -> None:
    """Regression: every route was documented as needing a bearer token, public ones too."""
    schema = client.get("/openapi.json").json()
    for method, path in [
        ("get", "/healthz"),
        ("get", "/log/checkpoint"),
        ("post", "/oauth/token"),
        ("get", "/log/proof/inclusion"),
        ("get", "/dl/{org}/{name}/{version}/{tier}/{path}"),
    ]:
        assert "security" not in _operation(schema, method, path), path
    optional = [("get", "/api/models"), ("get", "/{org}/{name}/resolve/{revision}/{path}")]
    for method, path in optional:
        assert _operation(schema, method, path)["security"] == [{}, BEARER], path
    for method, path in [("get", "/api/whoami"), ("post", "/v1/completions")]:
        assert _operation(schema, method, path)["security"] == [BEARER], path
    # And the server agrees: a public route answers without a token, a private one does not.
    assert client.get("/api/models").status_code == 200
    assert client.get("/api/whoami").status_code == 401


def test_validation_errors_are_documented_as_the_server_writes_them(client: TestClient) -> None:
    """Regression: 422 was documented as FastAPI's HTTPValidationError in application/json."""
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    create = _operation(schema, "post", "/api/tokens")["responses"]
    assert create["422"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    completions = _operation(schema, "post", "/v1/completions")["responses"]
    assert completions["422"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}
    }
    sent = client.post("/api/tokens", json={"name": 5})
    assert sent.status_code in (401, 422)
    assert sent.headers["content-type"].startswith("application/problem+json")


def test_every_json_body_route_documents_the_malformed_json_400(client: TestClient) -> None:
    """Regression: a body that is not JSON answers 400 `malformed_json`, documented nowhere."""
    schema = client.get("/openapi.json").json()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
        and "400" not in operation["responses"]
    ]
    assert missing == []
    # The body limit answers 413 on every route with a body (schemathesis sent a megabyte).
    unlimited = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation and "413" not in operation["responses"]
    ]
    assert unlimited == []


def test_error_responses_name_one_media_type(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        expected = "application/json" if path.startswith("/v1/") else "application/problem+json"
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == [expected], (method, path, status)


def test_head_and_tree_folder_routes_and_file_media_types_are_documented(
    client: TestClient,
) -> None:
    """Regression: HEAD (what huggingface_hub sends first) and `tree/{rev}/{path}` were hidden."""
    schema = client.get("/openapi.json").json()
    resolve = schema["paths"]["/{org}/{name}/resolve/{revision}/{path}"]
    assert {"get", "head"} <= resolve.keys()
    assert {"get", "head"} <= schema["paths"]["/dl/{org}/{name}/{version}/{tier}/{path}"].keys()
    assert "/api/models/{org}/{name}/tree/{revision}/{path}" in schema["paths"]
    got = resolve["get"]["responses"]
    assert "application/octet-stream" in got["200"]["content"]
    assert {"200", "206", "302", "416"} <= got.keys()
    vkey = _operation(schema, "get", "/log/vkey")["responses"]["200"]["content"]
    assert list(vkey) == ["text/plain"]
    stream = _operation(schema, "post", "/v1/completions")["responses"]["200"]["content"]
    assert "text/event-stream" in stream


def test_repo_id_rule_is_in_the_path_parameters(client: TestClient) -> None:
    import re

    schema = client.get("/openapi.json").json()
    params = _operation(schema, "get", "/api/releases/{org}/{name}")["parameters"]
    patterns = {p["name"]: p["schema"]["pattern"] for p in params if p["in"] == "path"}
    assert re.fullmatch(patterns["org"], "acme")
    assert not re.fullmatch(patterns["name"], "-x")
    # The server enforces what the document says.
    assert client.get("/api/releases/acme/-x").status_code == 422


def test_method_not_allowed_lists_every_method_of_the_path(client: TestClient) -> None:
    """Regression: `OPTIONS /api/tokens` answered `Allow: GET` although POST exists too."""
    answered = client.options("/api/tokens")
    assert answered.status_code == 405
    assert answered.headers["allow"] == "GET, POST"
    answered = client.request("OPTIONS", "/api/access/policies/a/b/1/open")
    assert answered.headers["allow"] == "GET, PUT"
