"""Record security-relevant events as log entries, inside the caller's transaction.

An entry is appended in the same transaction as the change it describes, so an event is in
the log exactly when the change committed. The index comes from one atomic
`UPDATE ... RETURNING` on the `log_state` row: it takes PostgreSQL's row lock (SQLite's write
lock) until commit, so indices are dense, ordered and never reused, whatever the number of
gateway processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import LogEntry
from licensing.canonical import canonical_json

ENTRY_VERSION = 1
_NEXT_INDEX = text(
    "UPDATE log_state SET next_index = next_index + 1 WHERE id = 1 RETURNING next_index"
)
_RESERVE = text(
    "UPDATE log_state SET next_index = next_index + :n WHERE id = 1 RETURNING next_index"
)
# Core insert: an ORM object per entry costs more than the rest of the append together.
_INSERT_ENTRIES = insert(LogEntry.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, as the log records it: never a token, never a secret."""

    kind: str  # "account", "client", "anonymous" or "operator" (a host command, no account)
    name: str | None = None
    user_id: int | None = None
    network: str | None = None  # a salted hash of the client network, when recorded

    @classmethod
    def of(cls, principal: Principal | None) -> Actor:
        if principal is None:
            return cls(kind="anonymous")
        kind = "client" if principal.method == "oauth" else "account"
        return cls(kind=kind, name=principal.username, user_id=principal.user_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.name is not None:
            out["name"] = self.name
        if self.network is not None:
            out["network"] = self.network
        return out


def digest_of(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    """One event for :func:`record_events`; the same fields as :func:`record_event` takes."""

    action: str
    actor: Actor
    resource: str
    org_id: int | None = None
    fields: dict[str, Any] | None = None


def entry_time(now: datetime) -> str:
    """The ``time`` field of an entry written at ``now``."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entry_row(index: int, event: Event, now: datetime) -> dict[str, Any]:
    entry = {
        "v": ENTRY_VERSION,
        "index": index,
        "time": entry_time(now),
        "action": event.action,
        "actor": event.actor.to_dict(),
        "resource": event.resource,
        "fields": event.fields or {},
    }
    return {
        "idx": index,
        "entry": canonical_json(entry).decode("utf-8"),
        "action": event.action,
        "actor_user_id": event.actor.user_id,
        "org_id": event.org_id,
        "created_at": now,
    }


def record_event(
    session: Session,
    *,
    action: str,
    actor: Actor,
    resource: str,
    now: datetime,
    org_id: int | None = None,
    fields: dict[str, Any] | None = None,
) -> int:
    """Append one entry and return its log index. Values must be canonical-JSON safe."""
    new_next = session.execute(_NEXT_INDEX).scalar_one()
    index = int(new_next) - 1
    event = Event(action=action, actor=actor, resource=resource, org_id=org_id, fields=fields)
    # Flush first so the entry lands after whatever the caller staged, as before.
    session.flush()
    session.execute(_INSERT_ENTRIES, [_entry_row(index, event, now)])
    return index


def record_events(session: Session, events: Sequence[Event], *, now: datetime) -> list[int]:
    """Append several entries with one index reservation and one multi-row insert.

    For callers that log many events in one transaction (batched generation calls, bulk
    imports): the same guarantees as :func:`record_event`, a fraction of the statements.
    """
    if not events:
        return []
    new_next = int(session.execute(_RESERVE, {"n": len(events)}).scalar_one())
    first = new_next - len(events)
    session.flush()
    session.execute(
        _INSERT_ENTRIES, [_entry_row(first + i, event, now) for i, event in enumerate(events)]
    )
    return list(range(first, new_next))
