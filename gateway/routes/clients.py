"""OAuth2 clients of the caller (admins: of anyone): register, list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel import Session

from gateway.db.models import OAuthClient, User
from gateway.db.timeutil import as_utc
from gateway.deps import CurrentPrincipal, NowDep, SessionDep
from gateway.errors import Forbidden, InsufficientScope
from gateway.problems import problem_responses
from gateway.schemas.access import ClientCreate, ClientCreated, ClientPublic
from gateway.services import accounts, oauth

router = APIRouter(prefix="/api/clients", tags=["oauth"], responses=problem_responses(401, 503))


def client_public(session: Session, client: OAuthClient) -> ClientPublic:
    owner = session.get(User, client.user_id)
    return ClientPublic(
        client_id=client.client_id,
        name=client.name,
        owner=owner.username if owner else "",
        scopes=client.scopes.split(),
        created_at=as_utc(client.created_at),
        revoked_at=as_utc(client.revoked_at) if client.revoked_at else None,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register an OAuth2 client (client credentials); the secret is shown once.",
    responses=problem_responses(403, 404, 413, 415, 422),
)
def create_client(
    body: ClientCreate, principal: CurrentPrincipal, session: SessionDep, now: NowDep
) -> ClientCreated:
    if principal.method != "token":
        # A client must not mint further clients: only people (API tokens) register them.
        raise Forbidden("register clients with a personal API token")
    if body.user is not None and body.user != principal.username:
        if not principal.has_scope("admin"):
            raise InsufficientScope("registering clients for others needs the 'admin' scope")
        owner = accounts.get_user(session, body.user)
    else:
        owner = accounts.get_user(session, principal.username)
        wanted = frozenset(body.scopes) if body.scopes is not None else principal.scopes
        if not wanted <= principal.scopes:
            raise InsufficientScope("a client cannot have scopes the presenting token lacks")
    scopes = frozenset(body.scopes) if body.scopes is not None else None
    if scopes is None and owner.username == principal.username:
        scopes = principal.scopes
    issued = oauth.create_client(
        session, owner, name=body.name, scopes=scopes, now=now, actor=principal
    )
    return ClientCreated(
        **client_public(session, issued.client).model_dump(), client_secret=issued.secret
    )


@router.get("", summary="The caller's OAuth2 clients (never their secrets).")
def list_clients(principal: CurrentPrincipal, session: SessionDep) -> list[ClientPublic]:
    return [client_public(session, c) for c in oauth.list_clients(session, principal.user_id)]


@router.delete(
    "/{client_id}",
    summary="Revoke a client; its tokens stop working at once.",
    responses=problem_responses(404),
)
def revoke_client(
    client_id: str, principal: CurrentPrincipal, session: SessionDep, now: NowDep
) -> ClientPublic:
    return client_public(session, oauth.revoke_client(session, principal, client_id, now=now))
