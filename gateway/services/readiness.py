"""Readiness: is this replica able to serve (database, schema, blob store, transparency log)?

The probe route and any operator tooling ask here, so what "ready" means has one home.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from gateway.state import GatewayState

__all__ = ["readiness_checks"]

# sha256 of the empty string: a valid address whose lookup is one cheap stat/HEAD.
_PROBE_DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def readiness_checks(state: GatewayState, ledger: Any | None) -> dict[str, str]:
    """Each check's status ("ok" or why not); storage and the log are listed only on failure."""
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
    if ledger is not None and state.schema.ready and (log_check := ledger.readiness()) != "ok":
        # Listed only when not ok, so a healthy gateway's checks stay {database, schema}.
        checks["log"] = log_check
    return checks
