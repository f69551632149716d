"""Link use cases: issue a download link, and check one on every hit (revocation, budget, log).

Every check a hit needs is re-done against the database each time: the grant and the release
can change after the link was issued, and the byte budget is shared by all gateway processes
through one conditional ``UPDATE`` (the row lock serializes concurrent hits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import text
from sqlmodel import Session, select

from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.db.models import DownloadLink, Org, Release, ReleaseStatus, User
from gateway.db.timeutil import as_utc
from gateway.errors import ValidationFailed
from gateway.keyring import Keyring
from gateway.ledger.events import Actor, record_event
from gateway.links import (
    LinkBudgetExhausted,
    LinkClaims,
    LinkObject,
    LinkRevoked,
    LinkWrongFile,
    LinkWrongNetwork,
    ReleaseYanked,
    in_network,
    new_link_id,
    sign_link,
    verify_link,
)
from gateway.services.downloads import (
    ServedFile,
    TierRef,
    find_file,
    grant_is_live,
    read_access,
    resolve_revision,
)
from gateway.services.releases import split_repo_id
from gateway.streaming import ByteRange

__all__ = ["IssuedLink", "LinkHit", "check_link_hit", "issue_link", "link_path"]

_RESERVE = text(
    "UPDATE download_links SET bytes_served = bytes_served + :n "
    "WHERE id = :id AND bytes_served + :n <= byte_budget"
)


@dataclass(frozen=True, slots=True)
class IssuedLink:
    url: str
    token: str
    claims: LinkClaims
    expires_at: datetime
    size: int
    byte_budget: int


@dataclass(frozen=True, slots=True)
class LinkHit:
    claims: LinkClaims
    ref: TierRef
    file: ServedFile


def link_path(obj: LinkObject) -> str:
    """The URL path a link serves; the token rides in the ``token`` query parameter."""
    return (
        "/dl/"
        + "/".join(
            quote(part, safe="") for part in (*obj.repo_id.split("/"), obj.version, obj.tier)
        )
        + "/"
        + quote(obj.path, safe="/")
    )


def issue_link(
    session: Session,
    principal: Principal | None,
    ref: TierRef,
    path: str,
    *,
    keyring: Keyring,
    settings: Settings,
    base_url: str,
    now: datetime,
    ttl_seconds: int | None = None,
    network: str | None = None,
) -> IssuedLink:
    """A signed link to one file of a tier the caller may read, recorded in the call log.

    Lifetime: the default (or asked) TTL, capped by the configured maximum and by the expiry
    of the grant it is issued under.
    """
    grant = read_access(session, principal, ref, now=now)
    file = find_file(session, ref, path)
    ttl = settings.link_default_ttl_seconds if ttl_seconds is None else ttl_seconds
    if ttl <= 0:
        raise ValidationFailed("a link lifetime must be positive")
    expires = now + timedelta(seconds=min(ttl, settings.link_max_ttl_seconds))
    if grant is not None:
        expires = min(expires, as_utc(grant.expires_at))
    obj = LinkObject(
        ref.release.repo_id, ref.release.version, ref.tier.tier, file.path, file.sha256
    )
    claims = LinkClaims(
        link_id=new_link_id(),
        key_id=keyring.current_link_key_id,
        method="GET",
        object=obj,
        subject=principal.user_id if principal is not None else None,
        grant_id=grant.id if grant is not None else None,
        not_before=int(now.timestamp()),
        expires=int(expires.timestamp()),
        network=network,
    )
    budget = max(file.size, math.ceil(file.size * settings.link_budget_factor))
    assert ref.release.id is not None
    session.add(
        DownloadLink(
            id=claims.link_id,
            release_id=ref.release.id,
            tier=obj.tier,
            path=obj.path,
            sha256=obj.sha256,
            user_id=claims.subject,
            grant_id=claims.grant_id,
            key_id=claims.key_id,
            issued_at=now,
            expires_at=expires,
            byte_budget=budget,
            bytes_served=0,
        )
    )
    session.flush()
    record_event(
        session,
        action="link.issued",
        actor=Actor.of(principal),
        resource=f"release:{obj.repo_id}@{obj.version}",
        now=now,
        org_id=ref.release.org_id,
        fields={
            "link": claims.link_id,
            "tier": obj.tier,
            "path": obj.path,
            "sha256": obj.sha256,
            "grant": claims.grant_id,
            "exp": claims.expires,
            "kid": claims.key_id,
            "network_bound": network is not None,
        },
    )
    token = sign_link(claims, keyring.link_keys)
    url = f"{base_url.rstrip('/')}{link_path(obj)}?token={token}"
    return IssuedLink(url, token, claims, expires, file.size, budget)


def _release_for(session: Session, obj: LinkObject) -> Release:
    org_name, name = split_repo_id(obj.repo_id)
    org = session.exec(select(Org).where(Org.name == org_name)).first()
    release = (
        session.exec(
            select(Release).where(
                Release.org_id == org.id, Release.name == name, Release.version == obj.version
            )
        ).first()
        if org is not None
        else None
    )
    if release is None or release.status == ReleaseStatus.pending.value:
        raise LinkRevoked("the release this link opens is gone")
    if release.status == ReleaseStatus.yanked.value:
        raise ReleaseYanked(
            f"{obj.repo_id}@{obj.version} was yanked: {release.yank_reason or 'no reason given'}"
        )
    return release


def check_link_hit(
    session: Session,
    token: str,
    requested: LinkObject,
    *,
    method: str,
    client_host: str | None,
    keyring: Keyring,
    settings: Settings,
    now: datetime,
) -> LinkHit:
    """Verify a link for a request of ``requested`` (repo, version, tier, path; sha256 unset)."""
    claims = verify_link(
        token,
        keyring.link_keys,
        now=now,
        leeway_seconds=settings.link_leeway_seconds,
        method=method,
    )
    obj = claims.object
    if (obj.repo_id, obj.version, obj.tier, obj.path) != (
        requested.repo_id,
        requested.version,
        requested.tier,
        requested.path,
    ):
        raise LinkWrongFile("this link opens another file")
    if claims.network is not None and not in_network(client_host, claims.network):
        raise LinkWrongNetwork("this link is bound to another client network")
    release = _release_for(session, obj)
    ref = resolve_revision(session, obj.repo_id, f"{obj.version}-{obj.tier}", viewer=None)
    if ref.release.id != release.id:
        raise LinkRevoked("the release this link opens is gone")
    if claims.grant_id is not None:
        if claims.subject is None or (
            grant_is_live(
                session,
                claims.grant_id,
                user_id=claims.subject,
                release=release,
                tier=obj.tier,
                now=now,
            )
            is None
        ):
            raise LinkRevoked("the grant behind this link was revoked or has expired")
    elif claims.subject is not None:
        user = session.get(User, claims.subject)
        if user is None or user.disabled:
            raise LinkRevoked("the account behind this link is disabled")
    file = find_file(session, ref, obj.path)
    if file.sha256 != obj.sha256:
        raise LinkWrongFile("the file changed since this link was issued")
    return LinkHit(claims, ref, file)


def record_link_use(
    session: Session,
    hit: LinkHit,
    byte_range: ByteRange,
    *,
    method: str,
    now: datetime,
) -> None:
    """Charge the bytes about to be sent to the link's budget, atomically, and log the hit."""
    amount = byte_range.length if method == "GET" else 0
    result: Any = session.execute(_RESERVE, {"n": amount, "id": hit.claims.link_id})
    if result.rowcount != 1:
        raise LinkBudgetExhausted(
            "this link has served its byte budget: ask for a new link"
            if session.get(DownloadLink, hit.claims.link_id) is not None
            else "this link was never issued by this gateway"
        )
    user = session.get(User, hit.claims.subject) if hit.claims.subject is not None else None
    actor = (
        Actor(kind="account", name=user.username, user_id=user.id)
        if user is not None
        else Actor(kind="anonymous")
    )
    obj = hit.claims.object
    record_event(
        session,
        action="download.link",
        actor=actor,
        resource=f"release:{obj.repo_id}@{obj.version}",
        now=now,
        org_id=hit.ref.release.org_id,
        fields={
            "link": hit.claims.link_id,
            "tier": obj.tier,
            "path": obj.path,
            "method": method,
            "range": byte_range.content_range if byte_range.partial else None,
            "bytes": amount,
            "grant": hit.claims.grant_id,
        },
    )
