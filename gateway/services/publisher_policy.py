"""A publisher's policy: how long its models' reports stay private, and its auditor key.

One row per org (``publisher_policies``); an org without one has the defaults (a 90-day
disclosure window, no auditor key). Every change is a ``publisher.policy_updated`` log event
carrying the new window and the auditor key's id and digest, so an auditor can tell from the
log which key each sealed trace was meant for and since when.

The window is read when a report is received and fixed into its deadline then (and logged
with it): shortening it later cannot reach back and expose reports filed under a longer one,
and lengthening it cannot hide them longer.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from gateway.auth.principal import Principal
from gateway.db.models import Org, PublisherPolicy, Role
from gateway.errors import Forbidden, NotFound, ValidationFailed
from gateway.ledger.events import Actor, record_event

__all__ = [
    "DEFAULT_DISCLOSURE_DAYS",
    "MAX_DISCLOSURE_DAYS",
    "MIN_DISCLOSURE_DAYS",
    "AuditorKeyInvalid",
    "KEEP",
    "DisclosureWindowInvalid",
    "PolicyView",
    "auditor_key_id",
    "disclosure_days",
    "get_policy",
    "set_policy",
]

DEFAULT_DISCLOSURE_DAYS = 90
# A week is the shortest a publisher can triage in; a year the longest a reporter should wait.
MIN_DISCLOSURE_DAYS, MAX_DISCLOSURE_DAYS = 7, 365


class DisclosureWindowInvalid(ValidationFailed):
    code = "disclosure_window_invalid"
    title = "Disclosure window out of range"


class AuditorKeyInvalid(ValidationFailed):
    code = "auditor_key_invalid"
    title = "Not an X25519 public key"


@dataclass(frozen=True, slots=True)
class PolicyView:
    org: str
    report_disclosure_days: int
    auditor_key: str | None  # raw X25519 public key, hex
    auditor_key_id: str | None


def auditor_key_id(public_key: bytes) -> str:
    """The first 16 hex digits of the key's sha256: short, and named in each sealed trace."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _parse_key(text: str) -> bytes:
    try:
        raw = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise AuditorKeyInvalid("the auditor key is 32 bytes (a raw X25519 public key) in hex")
    return raw


def _org(session: Session, name: str) -> Org:
    org = session.exec(select(Org).where(Org.name == name)).first()
    if org is None or org.id is None:
        raise NotFound(f"no org {name!r:.80}")
    return org


def _row(session: Session, org_id: int) -> PublisherPolicy | None:
    return session.get(PublisherPolicy, org_id)


def disclosure_days(session: Session, org_id: int) -> int:
    row = _row(session, org_id)
    return DEFAULT_DISCLOSURE_DAYS if row is None else row.report_disclosure_days


def auditor_key(session: Session, org_id: int) -> tuple[bytes, str] | None:
    """The org's auditor key and its id, or None when its traces are not kept."""
    row = _row(session, org_id)
    if row is None or row.auditor_key is None or row.auditor_key_id is None:
        return None
    return bytes.fromhex(row.auditor_key), row.auditor_key_id


def _view(org: Org, row: PublisherPolicy | None) -> PolicyView:
    if row is None:
        return PolicyView(org.name, DEFAULT_DISCLOSURE_DAYS, None, None)
    return PolicyView(org.name, row.report_disclosure_days, row.auditor_key, row.auditor_key_id)


def get_policy(session: Session, org_name: str) -> PolicyView:
    """Public: reporters should know the window, and auditors the key, before relying on them."""
    org = _org(session, org_name)
    assert org.id is not None
    return _view(org, _row(session, org.id))


KEEP = object()  # set_policy(auditor_key=KEEP): leave the key as it is


def set_policy(
    session: Session,
    principal: Principal,
    org_name: str,
    *,
    report_disclosure_days: int | None,
    auditor_key: str | object | None = KEEP,
    now: datetime,
) -> PolicyView:
    """Change what is given (``auditor_key=None`` removes the key); one logged event."""
    org = _org(session, org_name)
    assert org.id is not None
    if principal.role is not Role.admin and not (
        principal.role is Role.publisher and principal.org_id == org.id
    ):
        raise Forbidden("only the org's publishers set its policy")
    row = _row(session, org.id) or PublisherPolicy(
        org_id=org.id, report_disclosure_days=DEFAULT_DISCLOSURE_DAYS
    )
    if report_disclosure_days is not None:
        if not MIN_DISCLOSURE_DAYS <= report_disclosure_days <= MAX_DISCLOSURE_DAYS:
            raise DisclosureWindowInvalid(
                f"the disclosure window is {MIN_DISCLOSURE_DAYS} to {MAX_DISCLOSURE_DAYS} days; "
                f"got {report_disclosure_days}"
            )
        row.report_disclosure_days = report_disclosure_days
    if auditor_key is None:
        row.auditor_key = row.auditor_key_id = None
    elif isinstance(auditor_key, str):
        raw = _parse_key(auditor_key)
        row.auditor_key, row.auditor_key_id = raw.hex(), auditor_key_id(raw)
    row.updated_at = now
    session.add(row)
    session.flush()
    record_event(
        session,
        action="publisher.policy_updated",
        actor=Actor.of(principal),
        resource=f"org:{org.name}",
        now=now,
        org_id=org.id,
        fields={
            "report_disclosure_days": row.report_disclosure_days,
            "auditor_key_id": row.auditor_key_id,
            "auditor_key": row.auditor_key,
        },
    )
    return _view(org, row)
