"""Token lineage: a minted API token stays bound to the credential that minted it.

A token records its parent (an API token, or an OAuth client and the access token's jti).
Revoking a parent cascades to every descendant at once, and authentication walks the chain
again on every use, so a descendant missed by a cascade (a race, a parent revoked by a path
that predates lineage) still fails. Chains are short: minting refuses past ``MAX_DEPTH``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from gateway.db.models import ApiToken, OAuthClient, RevokedJti, User
from gateway.db.timeutil import as_utc
from gateway.errors import TokenExpired, TokenRevoked, ValidationFailed

__all__ = ["MAX_DEPTH", "check_lineage", "depth_of", "revoke_descendants", "revoke_minted_by"]

# Tokens minted by tokens minted by ...: deep enough for any real delegation, and it bounds
# the work one authentication does to a few primary-key reads.
MAX_DEPTH = 8


def client_is_active(session: Session, client_id: str) -> bool:
    client = session.exec(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()
    if client is None or client.revoked_at is not None:
        return False
    owner = session.get(User, client.user_id)
    return owner is not None and not owner.disabled


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


def check_lineage(session: Session, token: ApiToken, *, now: datetime) -> None:
    """Raise 401 unless every credential above ``token`` is still live."""
    current = token
    for _ in range(MAX_DEPTH + 1):
        if current.parent_client_id is not None:
            if not client_is_active(session, current.parent_client_id):
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
    """Revoke every token minted (directly or not) by ``token_ids``; returns how many."""
    revoked = 0
    frontier = list(token_ids)
    seen: set[int] = set(frontier)
    # Depth is bounded at minting, but a breadth-first walk with ``seen`` needs no such trust.
    while frontier:
        children = [
            row
            for row in session.exec(
                select(ApiToken).where(col(ApiToken.parent_token_id).in_(frontier))
            )
            if row.id is not None and row.id not in seen
        ]
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
