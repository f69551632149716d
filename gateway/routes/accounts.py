"""The caller's own account and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status

from gateway.deps import CurrentPrincipal, NowDep, RowId, SessionDep, StateDep
from gateway.problems import problem_responses
from gateway.schemas.accounts import TokenCreate, TokenCreated, TokenPublic, WhoAmI, token_public
from gateway.services import accounts, ratelimit

router = APIRouter(prefix="/api", tags=["accounts"], responses=problem_responses(401, 503))


def limit_api_token_issuance(
    request: Request, principal: CurrentPrincipal, state: StateDep, now: NowDep
) -> None:
    """For ``POST /api/tokens``: the same budget as ``/oauth/token``, keyed by the account."""
    settings = state.settings
    address = request.client.host if request.client else "unknown"
    limits = ratelimit.token_limits(
        address,
        f"user:{principal.user_id}",
        per_address=settings.rate_limit_tokens_per_address,
        per_account=settings.rate_limit_tokens_per_account,
        window_seconds=settings.rate_limit_window_seconds,
    )
    ratelimit.hit(state.engine, limits, now=now)


@router.get("/whoami", summary="Who the presented token belongs to.")
def whoami(principal: CurrentPrincipal) -> WhoAmI:
    return WhoAmI(
        username=principal.username,
        role=principal.role,
        org=principal.org,
        scopes=sorted(principal.scopes),
        auth_method=principal.method,
        token_id=principal.token_id,
    )


@router.get("/tokens", summary="List the caller's API tokens (never the tokens themselves).")
def list_tokens(principal: CurrentPrincipal, session: SessionDep) -> list[TokenPublic]:
    return [token_public(t) for t in accounts.list_tokens(session, principal.user_id)]


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API token for the caller; the token is in the response, once.",
    responses=problem_responses(400, 403, 413, 415, 422, 429),
    dependencies=[Depends(limit_api_token_issuance)],
)
def create_token(
    body: TokenCreate, principal: CurrentPrincipal, session: SessionDep, now: NowDep
) -> TokenCreated:
    issued = accounts.issue_token(
        session,
        accounts.get_user(session, principal.username),
        name=body.name,
        now=now,
        scopes=frozenset(body.scopes) if body.scopes is not None else None,
        ttl_days=body.ttl_days,
        parent=principal,
    )
    return TokenCreated(**token_public(issued.token).model_dump(), token=issued.plaintext)


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke one of the caller's tokens.",
    responses=problem_responses(404),
)
def revoke_token(
    token_id: RowId,
    session: SessionDep,
    now: NowDep,
    principal: CurrentPrincipal,
) -> TokenPublic:
    token = accounts.revoke_token(session, token_id, now=now, owner_id=principal.user_id)
    return token_public(token)
