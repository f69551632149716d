"""Public keys accounts register: publishers' release-signing keys, developers' attestation keys."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import PublicKeyRecord, Release, Role
from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateway.ledger.events import Actor, record_event
from licensing.errors import LicensingError
from licensing.keys import PublicKey


def register_key(
    session: Session, principal: Principal, *, pem: str, name: str, now: datetime
) -> PublicKeyRecord:
    """Bind a public key to the caller (and to the caller's org when they are a publisher)."""
    try:
        key = PublicKey.from_pem(pem.encode("utf-8"))
    except LicensingError as exc:
        raise ValidationFailed(f"not a usable public key: {exc.message}") from exc
    existing = session.exec(
        select(PublicKeyRecord).where(PublicKeyRecord.key_id == key.key_id)
    ).first()
    if existing is not None:
        if existing.user_id == principal.user_id and existing.revoked_at is None:
            return existing
        raise Conflict("this key is already registered")
    org_id = principal.org_id if principal.role is Role.publisher else None
    record = PublicKeyRecord(
        user_id=principal.user_id,
        org_id=org_id,
        key_id=key.key_id,
        key_type=key.key_type,
        pem=key.to_pem().decode("ascii"),
        name=name,
        created_at=now,
    )
    session.add(record)
    session.flush()
    record_event(
        session,
        action="key.registered",
        actor=Actor.of(principal),
        resource=f"key:{key.key_id}",
        now=now,
        org_id=org_id,
        fields={"key_type": key.key_type, "org": principal.org if org_id else None},
    )
    return record


def list_keys(session: Session, principal: Principal) -> list[PublicKeyRecord]:
    """The caller's keys, plus their org's keys for publishers."""
    query = select(PublicKeyRecord).order_by(col(PublicKeyRecord.id))
    if principal.org_id is not None and principal.role is Role.publisher:
        query = query.where(
            (PublicKeyRecord.user_id == principal.user_id)
            | (PublicKeyRecord.org_id == principal.org_id)
        )
    else:
        query = query.where(PublicKeyRecord.user_id == principal.user_id)
    return list(session.exec(query))


def revoke_key(
    session: Session, principal: Principal, key_id: str, *, now: datetime
) -> PublicKeyRecord:
    record = session.exec(select(PublicKeyRecord).where(PublicKeyRecord.key_id == key_id)).first()
    visible = record is not None and (
        record.user_id == principal.user_id
        or (principal.role is Role.publisher and record.org_id == principal.org_id)
    )
    if record is None or not visible:
        raise NotFound(f"no key {key_id!r}")
    if record.revoked_at is None:
        record.revoked_at = now
        session.add(record)
        record_event(
            session,
            action="key.revoked",
            actor=Actor.of(principal),
            resource=f"key:{key_id}",
            now=now,
            org_id=record.org_id,
        )
    return record


def org_signing_keys(session: Session, org_id: int) -> list[PublicKey]:
    rows = session.exec(
        select(PublicKeyRecord).where(
            PublicKeyRecord.org_id == org_id, col(PublicKeyRecord.revoked_at).is_(None)
        )
    )
    return [PublicKey.from_pem(row.pem.encode("ascii")) for row in rows]


def require_publisher_of(principal: Principal, org_name: str) -> int:
    if (
        principal.role is not Role.publisher
        or principal.org != org_name
        or principal.org_id is None
    ):
        raise Forbidden(f"only publishers of org {org_name!r} may do this")
    return principal.org_id


def signer_key_of(session: Session, release: Release) -> PublicKeyRecord:
    """The registered key that signed ``release`` (revoked or not: old releases still verify
    against the key they were signed with)."""
    record = session.exec(
        select(PublicKeyRecord).where(PublicKeyRecord.key_id == release.signer_key_id)
    ).first()
    if record is None:
        raise NotFound("the signer's key is no longer registered")
    return record
