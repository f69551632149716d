"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.deps import Public, StateDep
from gateway.problems import problem_response, problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Public], summary="Liveness: the process answers.")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    dependencies=[Public],
    summary="Readiness: the database answers and the schema is current.",
    responses=problem_responses(503),
)
def readyz(request: Request, state: StateDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver failure means "not ready", never a crash
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["schema"] = "ok" if state.schema.ready else (state.schema.last_error or "pending")
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
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
