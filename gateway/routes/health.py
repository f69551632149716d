"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from gateway.deps import Public, StateDep
from gateway.problems import problem_response, problem_responses

router = APIRouter(tags=["health"])
# sha256 of the empty string: a valid address whose lookup is one cheap stat/HEAD.
_PROBE_DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


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
    checks: dict[str, str] = {}
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver failure means "not ready", never a crash
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["schema"] = "ok" if state.schema.ready else (state.schema.last_error or "pending")
    try:
        # Backends with a dedicated probe (S3: HEAD bucket) use it; otherwise any answer to a
        # lookup, present or not, proves the store is reachable and authorised.
        probe = getattr(state.blobs, "check_ready", None)
        if callable(probe):
            probe()
        else:
            state.blobs.has(_PROBE_DIGEST)
    except Exception as exc:  # StorageUnavailable, or anything a backend let slip
        checks["storage"] = f"unavailable: {type(exc).__name__}"
    # Storage, like the log below, is listed only when it fails.
    ledger = getattr(request.app.state, "ledger", None)
    if ledger is not None and state.schema.ready and (log_check := ledger.readiness()) != "ok":
        # Listed only when not ok, so a healthy gateway's checks stay {database, schema}.
        checks["log"] = log_check
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
