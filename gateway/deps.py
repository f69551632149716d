"""FastAPI dependencies as `Annotated` aliases: state, database session, caller, authorization.

Every route declares one authorization rule, built here: `Public`, `Authenticated`, or
`require_scope(...)`. `rule_of()` lets a test prove that no route was left without one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import MAX_ROW_ID
from gateway.db.timeutil import utcnow
from gateway.errors import DatabaseUnavailable, InsufficientScope, Unauthenticated
from gateway.services.accounts import authenticate
from gateway.services.oauth import authenticate_access_token, looks_like_jwt, token_signer
from gateway.state import GatewayState

# Ids outside 1..MAX_ROW_ID name no row, and handing them to the driver overflows it (a 500
# on SQLite past 2**63, a 503 "database unavailable" on PostgreSQL past 2**31, whose id
# columns are int4), so they are refused at the edge, once, here.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A numeric id (1 .. 2**31-1).")]

_bearer = HTTPBearer(auto_error=False, description="A tiergate API token (tg_...).")
AUTHZ_ATTRIBUTE = "__tiergate_authz__"


# Dependencies that only read memory are async: FastAPI runs a plain function dependency in
# its thread pool, a round trip per dependency per request (issue 17's overhead target).
async def get_state(request: Request) -> GatewayState:
    return gateway_state(request)


def gateway_state(request: Request) -> GatewayState:
    """The app's state, for code that has the request but is not a dependency."""
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    if not state.schema.ready:
        raise DatabaseUnavailable(
            "the database is not ready yet"
            + (f" ({state.schema.last_error})" if state.schema.last_error else "")
        )
    with Session(state.engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# scope="function": commit before the response is sent, so a client that acts on an answer
# never races the transaction that produced it (and a failed commit is still an error reply).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_now() -> datetime:
    """The clock, as a dependency so tests can move it."""
    return utcnow()


NowDep = Annotated[datetime, Depends(get_now)]


def _mark(rule: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        setattr(func, AUTHZ_ATTRIBUTE, rule)
        return func

    return decorate


@_mark("public")
async def public() -> None:
    """Rule for routes anyone may call without a token."""


def authenticate_bearer(
    state: GatewayState, session: Session, token: str, *, now: datetime
) -> Principal:
    """An API token (``tg_...``) or, for services, an OAuth client-credentials JWT."""
    if not token.startswith("tg_") and looks_like_jwt(token):
        signer = token_signer(state.settings, state.keyring.oauth_signing_key)
        return authenticate_access_token(session, signer, token, now=now)
    return authenticate(session, token, now=now)


@_mark("authenticated")
def current_principal(
    state: StateDep,
    session: SessionDep,
    now: NowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send an API token: Authorization: Bearer tg_...")
    principal = authenticate_bearer(state, session, credentials.credentials, now=now)
    # End the authentication's transaction now: it hands the pooled connection back. Without
    # this a route that runs long after authenticating (a completion waits for its tokens)
    # holds a connection for its whole duration, and 32 concurrent calls exhaust the pool
    # (503 database_unavailable) although each needs the database only for milliseconds.
    session.commit()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

_scope_checkers: dict[str, Callable[..., Awaitable[Principal]]] = {}


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and requires ``scope`` on their token."""
    if scope in _scope_checkers:
        return _scope_checkers[scope]

    @_mark(f"scope:{scope}")
    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.has_scope(scope):
            raise InsufficientScope(f"this call needs the {scope!r} scope")
        return principal

    check.__name__ = f"require_scope_{scope}"
    _scope_checkers[scope] = check
    return check


Public = Depends(public)


def rule_of(func: Callable[..., Any]) -> str | None:
    rule = getattr(func, AUTHZ_ATTRIBUTE, None)
    return rule if isinstance(rule, str) else None


@_mark("public")
def optional_principal(
    state: StateDep,
    session: SessionDep,
    now: NowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """For public routes that show more to a known caller; a bad token is still a 401."""
    if credentials is None:
        return None
    if credentials.scheme.lower() != "bearer":
        raise Unauthenticated("only bearer tokens are accepted")
    return authenticate_bearer(state, session, credentials.credentials, now=now)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
