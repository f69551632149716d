"""Reasoning traces kept sealed to the publisher's auditor key, and disclosed with a log event.

When the model's org has an auditor key (:mod:`gateway.services.publisher_policy`), each
chat choice's trace is sealed to it (:mod:`gateway.generation.sealing`) as the call is logged:
the ``generation.completed`` entry holds, per output, ``reasoning_sealed`` = the key id and
the sealed bytes' sha256 (beside ``reasoning_sha256``), and ``sealed_reasoning`` holds the
bytes, written in the same transaction. The gateway keeps no plaintext and cannot open them.

Disclosure (:func:`disclose_traces`) hands the sealed bytes out, to the org's publishers or
an admin, and logs ``reasoning.disclosed`` first, naming the call, the choices and the
digests: an auditor's copy of a trace always has a log event behind it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import Role, SealedReasoning
from gateway.errors import NotFound
from gateway.generation.sealing import SUITE_NAME, seal_trace
from gateway.ledger.events import Actor, digest_of, record_event
from gateway.services import publisher_policy

__all__ = [
    "AuditorSeal",
    "SealedTraceNotFound",
    "auditor_seal_for",
    "disclose_traces",
    "store_sealed",
]


class SealedTraceNotFound(NotFound):
    code = "sealed_trace_not_found"
    title = "No sealed trace"


@dataclass(frozen=True, slots=True)
class AuditorSeal:
    """Seals one call's traces to one auditor key; collects what to store."""

    public_key: bytes
    key_id: str

    def seal(self, reasoning: str, *, call_id: str, choice: int) -> tuple[bytes, dict[str, Any]]:
        """(sealed bytes, the fields the log entry holds for them)."""
        sealed = seal_trace(reasoning, self.public_key, call_id=call_id, choice=choice)
        return sealed, {"key_id": self.key_id, "sha256": digest_of(sealed)}


def auditor_seal_for(engine: Engine, org_id: int) -> AuditorSeal | None:
    """The org's auditor seal, or None when it keeps no traces (one indexed read per call)."""
    with Session(engine) as session:
        found = publisher_policy.auditor_key(session, org_id)
    return None if found is None else AuditorSeal(*found)


def store_sealed(
    session: Session,
    *,
    call_id: str,
    org_id: int,
    log_index: int,
    key_id: str,
    sealed: dict[int, bytes],
    now: datetime,
) -> None:
    """The sealed traces of one call, in the transaction that logs it."""
    for choice, data in sealed.items():
        session.add(
            SealedReasoning(
                call_id=call_id,
                choice_index=choice,
                org_id=org_id,
                log_index=log_index,
                key_id=key_id,
                sealed=data,
                created_at=now,
            )
        )


def disclose_traces(
    session: Session, principal: Principal, call_id: str, *, now: datetime
) -> dict[str, Any]:
    """The call's sealed traces for its auditor, after logging ``reasoning.disclosed``."""
    if len(call_id) > 40 or not call_id.isascii():
        raise SealedTraceNotFound("not a call id of this gateway")
    rows = list(
        session.exec(
            select(SealedReasoning)
            .where(SealedReasoning.call_id == call_id)
            .order_by(col(SealedReasoning.choice_index))
        )
    )
    if not rows:
        raise SealedTraceNotFound(f"call {call_id} has no sealed reasoning trace")
    org_id = rows[0].org_id
    if principal.role is not Role.admin and not (
        principal.role is Role.publisher and principal.org_id == org_id
    ):
        # The same answer as for no trace: who logged what stays the org's business.
        raise SealedTraceNotFound(f"call {call_id} has no sealed reasoning trace")
    choices = [
        {
            "choice": row.choice_index,
            "key_id": row.key_id,
            "sealed": base64.b64encode(row.sealed).decode("ascii"),
            "sha256": digest_of(row.sealed),
        }
        for row in rows
    ]
    disclosed_at = record_event(
        session,
        action="reasoning.disclosed",
        actor=Actor.of(principal),
        resource=f"call:{call_id}",
        now=now,
        org_id=org_id,
        fields={
            "call_id": call_id,
            "log_index": rows[0].log_index,
            "choices": [
                {"choice": c["choice"], "key_id": c["key_id"], "sha256": c["sha256"]}
                for c in choices
            ],
        },
    )
    return {
        "call_id": call_id,
        "log_index": rows[0].log_index,
        "suite": SUITE_NAME,
        "choices": choices,
        "disclosure_log_index": disclosed_at,
    }
