"""Token lineage: a minted credential stays bound to the credential that minted it.

A token records its parent (an API token, or an OAuth client and the access token's jti); an
OAuth client registered with an API token records that token. Revoking a parent cascades to
every descendant at once, and every use walks the chain again, so a descendant missed by a
cascade (a race, a parent revoked by a path that predates lineage) still fails. Chains are
short: minting refuses past ``MAX_DEPTH`` tokens, and clients are registered by tokens only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from gateway.db.models import ApiToken, OAuthClient, RevokedJti, User
from gateway.db.timeutil import as_utc
from gateway.errors import TokenExpired, TokenRevoked, Unauthenticated, ValidationFailed

__all__ = [
    "MAX_DEPTH",
    "check_lineage",
    "client_is_active",
    "client_is_live",
    "depth_of",
    "revoke_descendants",
    "revoke_minted_by",
]

# Tokens minted by tokens minted by ...: deep enough for any real delegation, and it bounds
# the work one authentication does to a few primary-key reads.
MAX_DEPTH = 8


def client_is_live(session: Session, client: OAuthClient, *, now: datetime) -> bool:
    """Not revoked, its owner enabled, and the token that registered it (if any) still live."""
    if client.revoked_at is not None:
        return False
    owner = session.get(User, client.user_id)
    if owner is None or owner.disabled:
        return False
    if client.parent_token_id is None:
        return True
    parent = session.get(ApiToken, client.parent_token_id)
    if parent is None or parent.revoked_at is not None:
        return False
    if parent.expires_at is not None and as_utc(parent.expires_at) <= now:
        return False
    try:
        check_lineage(session, parent, now=now, through_clients=False)
    except Unauthenticated:
        return False
    return True


def client_is_active(session: Session, client_id: str, *, now: datetime) -> bool:
    client = session.exec(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()
    return client is not None and client_is_live(session, client, now=now)


def depth_of(session: Session, token_id: int) -> int:
    """How many API tokens stand above (and including) ``token_id`` in its chain."""
    depth = 0
    current: int | None = token_id
    while current is not None and depth <= MAX_DEPTH:
        row = session.get(ApiToken, current)
        if row is None:
            break
        depth += 1
        current = row.parent_token_id
    return depth


def check_lineage(
    session: Session, token: ApiToken, *, now: datetime, through_clients: bool = True
) -> None:
    """Raise 401 unless every credential above ``token`` is still live.

    ``through_clients=False`` when checking a client's own registering token: a client is
    registered by a personal token only, so that chain holds no client to recurse into.
    """
    current = token
    for _ in range(MAX_DEPTH + 1):
        if current.parent_client_id is not None:
            if not through_clients or not client_is_active(
                session, current.parent_client_id, now=now
            ):
                raise TokenRevoked("the OAuth client that minted this token was revoked")
            jti = current.parent_jti
            if jti is not None and session.get(RevokedJti, jti) is not None:
                raise TokenRevoked("the access token that minted this token was revoked")
            return
        if current.parent_token_id is None:
            return
        parent = session.get(ApiToken, current.parent_token_id)
        if parent is None or parent.revoked_at is not None:
            raise TokenRevoked("the token that minted this token was revoked")
        if parent.expires_at is not None and as_utc(parent.expires_at) <= now:
            raise TokenExpired("the token that minted this token has expired")
        current = parent
    raise TokenRevoked("this token's chain of minting credentials is too long")


def revoke_descendants(session: Session, token_ids: list[int], *, now: datetime) -> int:
    """Revoke every token and client minted (directly or not) by ``token_ids``; how many."""
    revoked = 0
    frontier = list(token_ids)
    seen: set[int] = set(frontier)
    # Depth is bounded at minting, but a breadth-first walk with ``seen`` needs no such trust.
    while frontier:
        clients = list(
            session.exec(select(OAuthClient).where(col(OAuthClient.parent_token_id).in_(frontier)))
        )
        revoked += _revoke_clients(session, clients, now=now)
        client_ids = [c.client_id for c in clients]
        query = select(ApiToken).where(col(ApiToken.parent_token_id).in_(frontier))
        if client_ids:
            query = select(ApiToken).where(
                col(ApiToken.parent_token_id).in_(frontier)
                | col(ApiToken.parent_client_id).in_(client_ids)
            )
        children = [row for row in session.exec(query) if row.id is not None and row.id not in seen]
        revoked += _revoke_rows(session, children, now=now)
        frontier = [row.id for row in children if row.id is not None]
        seen.update(frontier)
    return revoked


def revoke_minted_by(
    session: Session, *, now: datetime, client_id: str | None = None, jti: str | None = None
) -> int:
    """Revoke the tokens an OAuth client (or one of its access tokens) minted, and theirs."""
    query = select(ApiToken)
    if client_id is not None:
        query = query.where(ApiToken.parent_client_id == client_id)
    elif jti is not None:
        query = query.where(ApiToken.parent_jti == jti)
    else:
        raise ValidationFailed("name a client id or a jti to revoke what it minted")
    rows = list(session.exec(query))
    count = _revoke_rows(session, rows, now=now)
    return count + revoke_descendants(session, [r.id for r in rows if r.id is not None], now=now)


def _revoke_clients(session: Session, clients: list[OAuthClient], *, now: datetime) -> int:
    live = [c for c in clients if c.revoked_at is None]
    for client in live:
        client.revoked_at = now
        session.add(client)
    if live:
        session.flush()
    return len(live)


def _revoke_rows(session: Session, rows: list[ApiToken], *, now: datetime) -> int:
    ids = [row.id for row in rows if row.id is not None and row.revoked_at is None]
    if ids:
        # One conditional write: a token already revoked keeps its first revocation time.
        session.execute(
            update(ApiToken)
            .where(col(ApiToken.id).in_(ids), col(ApiToken.revoked_at).is_(None))
            .values(revoked_at=now)
        )
        for row in rows:
            if row.id in ids:
                session.refresh(row)
    return len(ids)
