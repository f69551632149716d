"""Public keys accounts register: publishers' release-signing keys, developers' attestation keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.conflicts import insert_unique
from gateway.db.engine import begin_write
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
    begin_write(session)
    existing = _registered(session, key.key_id)
    if existing is not None:
        return _already_registered(existing, principal)
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
    if not insert_unique(session, record):
        # Registered at the same moment through another request or replica.
        winner = _registered(session, key.key_id)
        if winner is None:  # pragma: no cover - the unique key_id row cannot vanish
            raise KeyAlreadyRegistered("this key is being registered; try again")
        return _already_registered(winner, principal)
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


class KeyAlreadyRegistered(Conflict):
    code = "key_already_registered"
    title = "Key already registered"


def _registered(session: Session, key_id: str) -> PublicKeyRecord | None:
    return session.exec(
        select(PublicKeyRecord)
        .where(PublicKeyRecord.key_id == key_id)
        .execution_options(populate_existing=True)
    ).first()


def _already_registered(existing: PublicKeyRecord, principal: Principal) -> PublicKeyRecord:
    """Registering one's own live key again is a no-op; anyone else's is a conflict."""
    if existing.user_id == principal.user_id and existing.revoked_at is None:
        return existing
    raise KeyAlreadyRegistered("this key is already registered")


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
    begin_write(session)
    record = _registered(session, key_id)
    visible = record is not None and (
        record.user_id == principal.user_id
        or (principal.role is Role.publisher and record.org_id == principal.org_id)
    )
    if record is None or not visible:
        raise NotFound(f"no key {key_id!r}")
    # One conditional update: of two revocations at once, only one happens and is logged;
    # revoking a revoked key stays an idempotent no-op.
    won = session.execute(
        update(PublicKeyRecord)
        .where(col(PublicKeyRecord.id) == record.id, col(PublicKeyRecord.revoked_at).is_(None))
        .values(revoked_at=now)
        .returning(col(PublicKeyRecord.id))
        .execution_options(synchronize_session=False)
    ).first()
    session.refresh(record)
    if won is None:
        return record  # revoked already (or meanwhile): nothing happened, nothing to log
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
