"""Sealed reasoning traces: disclosure to the publisher's auditor, as a logged event."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from gateway.auth.principal import Principal
from gateway.deps import NowDep, SessionDep, require_scope
from gateway.ledger.integrate import pending_entries
from gateway.ledger.reads import current_checkpoint, receipt_for
from gateway.ledger.runtime import LedgerRuntime
from gateway.problems import problem_responses
from gateway.services.sealed_reasoning import disclose_traces

router = APIRouter(prefix="/api/calls", tags=["log"], responses=problem_responses(401, 503))
Publisher = Annotated[Principal, Depends(require_scope("publish"))]


def _ledger(request: Request) -> LedgerRuntime:
    runtime: LedgerRuntime = request.app.state.ledger
    return runtime


LedgerDep = Annotated[LedgerRuntime, Depends(_ledger)]
CallId = Annotated[str, Path(min_length=1, max_length=40)]


@router.post(
    "/{call_id}/reasoning/disclose",
    summary="The call's reasoning traces, sealed to the org's auditor key, with the call's log "
    "entry and receipt; logs `reasoning.disclosed` first (the org's publishers, admins).",
    responses=problem_responses(403, 404),
)
def disclose(
    call_id: CallId, principal: Publisher, session: SessionDep, now: NowDep, ledger: LedgerDep
) -> dict[str, Any]:
    out = disclose_traces(session, principal, call_id, now=now)
    index = int(out["log_index"])
    # The receipt lets the auditor check offline that the entry (and its digests) is logged.
    if index >= current_checkpoint(session).size and pending_entries(session) > 0:
        session.commit()  # the disclosure event is written before the log integrates it
        ledger.integrate_now()
    entry, receipt = receipt_for(session, principal, index)
    return {**out, "entry": entry.entry, "receipt": receipt}
