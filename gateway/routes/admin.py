"""Administration over HTTP: users and their tokens (the `admin` scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import Org, Role, User
from gateway.deps import NowDep, RowId, SessionDep, require_scope
from gateway.problems import problem_responses
from gateway.schemas.accounts import (
    TokenPublic,
    UserCreate,
    UserCreated,
    UserPublic,
    token_public,
)
from gateway.services import accounts

router = APIRouter(prefix="/api/admin", tags=["admin"], responses=problem_responses(401, 403, 503))
AdminDep = Annotated[Principal, Depends(require_scope("admin"))]


def user_public(session: Session, user: User) -> UserPublic:
    org = session.get(Org, user.org_id) if user.org_id is not None else None
    assert user.id is not None
    return UserPublic(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        org=org.name if org else None,
        disabled=user.disabled,
        created_at=user.created_at,
    )


@router.get("/users", summary="List all users.")
def list_users(_: AdminDep, session: SessionDep) -> list[UserPublic]:
    return [user_public(session, user) for user in accounts.list_users(session)]


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user and a first API token for them (shown once).",
    responses=problem_responses(409, 413, 415, 422),
)
def create_user(body: UserCreate, _: AdminDep, session: SessionDep, now: NowDep) -> UserCreated:
    user = accounts.create_user(session, body.username, body.role, body.org)
    issued = accounts.issue_token(session, user, name="initial", now=now)
    return UserCreated(**user_public(session, user).model_dump(), token=issued.plaintext)


@router.delete("/tokens/{token_id}", summary="Revoke any token.", responses=problem_responses(404))
def revoke_any_token(token_id: RowId, _: AdminDep, session: SessionDep, now: NowDep) -> TokenPublic:
    return token_public(accounts.revoke_token(session, token_id, now=now))
