"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.deps import Public, StateDep
from gateway.problems import problem_response, problem_responses
from gateway.services.readiness import readiness_checks

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Public], summary="Liveness: the process answers.")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    dependencies=[Public],
    summary="Readiness: the database and blob storage answer and the schema is current.",
    responses=problem_responses(503),
)
def readyz(request: Request, state: StateDep) -> JSONResponse:
    checks = readiness_checks(state, getattr(request.app.state, "ledger", None))
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    generation = getattr(request.app.state, "generation", None)
    if generation is not None and (engines := generation.engine_status()):
        # Reported, not judged: a model whose engine is down answers 503 on its own; this
        # replica still serves every other model.
        body["engines"] = engines
    if ready:
        return JSONResponse(body)
    return problem_response(
        request,
        status=503,
        code="not_ready",
        title="Not ready",
        detail="; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
        extra=body,
        headers={"Retry-After": "2"},
    )
