"""Public keys of the caller (and of their org, for publishers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import Org, PublicKeyRecord
from gateway.deps import NowDep, SessionDep, require_scope
from gateway.problems import problem_responses
from gateway.schemas.releases import KeyPublic, KeyRegister
from gateway.services import keys

router = APIRouter(prefix="/api/keys", tags=["keys"], responses=problem_responses(401, 403, 503))
Reader = Annotated[Principal, Depends(require_scope("read"))]


def key_public(session: Session, record: PublicKeyRecord) -> KeyPublic:
    org = session.get(Org, record.org_id) if record.org_id is not None else None
    return KeyPublic(
        key_id=record.key_id,
        key_type=record.key_type,
        name=record.name,
        org=org.name if org else None,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a public key (publishers: for their org's releases).",
    responses=problem_responses(409, 413, 415, 422),
)
def register_key(
    body: KeyRegister, principal: Reader, session: SessionDep, now: NowDep
) -> KeyPublic:
    record = keys.register_key(session, principal, pem=body.pem, name=body.name, now=now)
    return key_public(session, record)


@router.get("", summary="List the caller's keys (and their org's).")
def list_keys(principal: Reader, session: SessionDep) -> list[KeyPublic]:
    return [key_public(session, r) for r in keys.list_keys(session, principal)]


@router.delete("/{key_id}", summary="Revoke a key (rotation).", responses=problem_responses(404))
def revoke_key(key_id: str, principal: Reader, session: SessionDep, now: NowDep) -> KeyPublic:
    return key_public(session, keys.revoke_key(session, principal, key_id, now=now))
