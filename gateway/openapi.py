"""The OpenAPI document: FastAPI's, corrected in one place so it says what the server does.

FastAPI's generator gets four things wrong for this gateway, each found by schemathesis:
- every route that can *read* a bearer token was declared as *needing* one, including public
  routes and routes that only show more to a known caller;
- validation errors were documented as FastAPI's `HTTPValidationError` in `application/json`,
  while the gateway answers problem+json (OpenAI's shape under `/v1/`) through one handler;
- a JSON body that does not parse answers 400 (`malformed_json`), documented nowhere;
- the repo id rule on `{org}` and `{name}` was invisible, so clients could not know which
  names the server rejects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.deps import current_principal, optional_principal
from gateway.problems import (
    PROBLEM_MEDIA_TYPE,
    OpenAIError,
    Problem,
    http_code,
    speaks_openai,
)

__all__ = ["build_openapi", "install_openapi"]

BEARER = "HTTPBearer"
# One part of a repo id (licensing.layout.REPO_ID_PATTERN is ORG/NAME of two such parts).
REPO_PART_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
# Path parameters whose rule the services enforce (422 for a repo id, 400 for a digest).
_PATH_PATTERNS = {
    "org": REPO_PART_PATTERN,
    "name": REPO_PART_PATTERN,
    "sha256": r"^[0-9a-f]{64}$",
}
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _security(dependant: Dependant) -> list[dict[str, list[str]]] | None:
    """The route's real requirement: a token, a token or nothing, or nothing at all."""
    calls = set(_calls(dependant))
    if current_principal in calls:
        return [{BEARER: []}]
    if optional_principal in calls:
        # Anonymous callers are served; a token, when sent, is checked (a bad one is a 401).
        return [{}, {BEARER: []}]
    return None


def _error_entry(path: str, status: int) -> dict[str, Any]:
    title = http_code(status)[1]
    if speaks_openai(path):
        ref = {"$ref": "#/components/schemas/OpenAIError"}
        return {"description": title, "content": {"application/json": {"schema": ref}}}
    ref = {"$ref": "#/components/schemas/Problem"}
    return {"description": title, "content": {PROBLEM_MEDIA_TYPE: {"schema": ref}}}


# File downloads stream bytes as `application/octet-stream` (gateway.streaming), 206 for a
# `Range`; HEAD answers the same headers without a body. S3-backed links redirect (302).
_FILE_OPERATIONS = {"resolve", "resolve_head", "download_link", "download_link_head"}
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _document_file(operation: dict[str, Any], method: str) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    body = {"content": _BINARY} if method == "get" else {}
    responses["200"] = {"description": "The file", **body}
    responses["206"] = {"description": "The requested byte range", **body}
    responses.setdefault("302", {"description": "Redirect to an expiring or presigned link"})


def _has_json_body(operation: dict[str, Any]) -> bool:
    content = operation.get("requestBody", {}).get("content", {})
    return "application/json" in content


def _fix_operation(
    path: str,
    operation: dict[str, Any],
    dependant: Dependant | None,
    json_route: Callable[[str], bool],
) -> None:
    security = _security(dependant) if dependant is not None else None
    if security is None:
        operation.pop("security", None)
    else:
        operation["security"] = security
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if _has_json_body(operation):
        responses.setdefault("400", {})  # malformed JSON, refused before validation
    if "requestBody" in operation:
        # The body limit and the JSON content-type rule are middleware: they answer before
        # any route runs, on every route with a body.
        responses.setdefault("413", {})
        if json_route(path):
            responses.setdefault("415", {})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            # One handler writes every error: problem+json, OpenAI's shape under /v1/. FastAPI
            # listed `application/json` (and its HTTPValidationError for 422) beside it.
            entry = _error_entry(path, int(status))
            entry["description"] = response.get("description") or entry["description"]
            responses[status] = entry
    for parameter in operation.get("parameters", []):
        pattern = _PATH_PATTERNS.get(parameter.get("name", ""))
        if parameter.get("in") == "path" and pattern:
            parameter.setdefault("schema", {})["pattern"] = pattern


def _routes_by_operation(app: FastAPI) -> dict[tuple[str, str], Dependant]:
    # FastAPI >= 0.16x keeps included routers in `app.routes`; walk the effective routes.
    found: dict[tuple[str, str], Dependant] = {}
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.route, APIRoute) and ctx.path_format:
            dependant = getattr(ctx, "dependant", None) or ctx.route.dependant
            for method in ctx.methods or ():
                found.setdefault((ctx.path_format, method.lower()), dependant)
    return found


def _references(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return any(
            (key == "$ref" and value == f"#/components/schemas/{name}") or _references(value, name)
            for key, value in node.items()
        )
    if isinstance(node, list):
        return any(_references(item, name) for item in node)
    return False


def build_openapi(app: FastAPI, json_route: Callable[[str], bool]) -> dict[str, Any]:
    """FastAPI's document for ``app``, with security, errors and path rules made true."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Problem", Problem.model_json_schema())
    schemas.setdefault("OpenAIError", OpenAIError.model_json_schema(ref_template="#/$defs/{model}"))
    routes = _routes_by_operation(app)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _fix_operation(path, operation, routes.get((path, method)), json_route)
            if operation.get("operationId") in _FILE_OPERATIONS:
                _document_file(operation, method)
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if name in schemas and not _references(schema["paths"], name):
            del schemas[name]
    if not _references(schema["paths"], "HTTPValidationError"):
        schemas.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI, json_route: Callable[[str], bool]) -> None:
    """Serve :func:`build_openapi`'s document at `/openapi.json` (built once, on first use).

    ``json_route`` is the app's rule for which paths take only JSON bodies (415 otherwise).
    """

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            app.openapi_schema = build_openapi(app, json_route)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
