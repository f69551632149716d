"""Admitting a generation call cheaply: resolved model names kept between calls, re-checked in
the admission transaction, and the per-account token quota.

Resolving ``ORG/NAME[@VERSION][:tier]`` from scratch takes half a dozen queries (org,
releases, tiers, signer key, files, grant). What it yields for a published release tier never
changes (versions are immutable), so the resolution is kept in process memory; what *can*
change - the release yanked, a newer version published (for a name without a version), the
caller's grant revoked or expired - is re-read on every call, inside the same transaction
that charges the quota and draws the call tags. A stale entry rolls that transaction back and
the call resolves afresh, so a yank or a revocation is refused on the very next call, by any
replica, exactly as without the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, text
from sqlalchemy.engine import Connection

from gateway.auth.principal import Principal
from gateway.db.models import Grant, Release, ReleaseStatus
from gateway.db.timeutil import as_utc
from gateway.generation.models import ModelRef
from gateway.services.downloads import org_member_of
from gateway.services.ratelimit import RateLimited

__all__ = [
    "QUOTA_WINDOW_SECONDS",
    "CachedModel",
    "ModelRefCache",
    "TokenQuota",
    "still_usable",
]

QUOTA_WINDOW_SECONDS = 60
_CHARGE = text(
    "INSERT INTO rate_limits (bucket, window_start, count) VALUES (:bucket, :window, :n) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_limits.count + :n "
    "RETURNING count"
)
_REFUND = text(
    "UPDATE rate_limits SET count = count - :n WHERE bucket = :bucket AND window_start = :window"
)
_PRUNE = text("DELETE FROM rate_limits WHERE bucket = :bucket AND window_start < :window")

_releases = Release.__table__.c  # type: ignore[attr-defined]
_grants = Grant.__table__.c  # type: ignore[attr-defined]
_PUBLISHED = ReleaseStatus.published.value


@dataclass(frozen=True, slots=True)
class CachedModel:
    """A model name resolved to a published release tier, and what to re-check on each call."""

    ref: ModelRef
    org_id: int
    release_name: str  # Release.name (NAME of ORG/NAME)
    pinned: bool  # the name gave a version; else it means "the latest published"
    gated: bool


class ModelRefCache:
    """Thread-safe LRU of resolved model names (only successful resolutions are kept)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, CachedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> CachedModel | None:
        with self._lock:
            found = self._entries.get(name)
            if found is not None:
                self._entries.move_to_end(name)
            return found

    def put(self, name: str, entry: CachedModel) -> None:
        with self._lock:
            self._entries[name] = entry
            self._entries.move_to_end(name)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def forget(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)


def _newest_key(row: Any) -> tuple[datetime, int]:
    # The order find_release picks "the latest published version" by.
    return (row.published_at or row.created_at, row.id)


_RELEASE_COLUMNS = (_releases.id, _releases.status, _releases.published_at, _releases.created_at)
# Built once (with bound parameters): composing the expressions costs more than running them.
_PINNED_RELEASE = select(*_RELEASE_COLUMNS).where(_releases.id == bindparam("release_id"))
_LATEST_RELEASES = select(*_RELEASE_COLUMNS).where(
    _releases.org_id == bindparam("org_id"),
    _releases.name == bindparam("name"),
    or_(_releases.id == bindparam("release_id"), _releases.status == _PUBLISHED),
)
_GRANT_EXPIRIES = select(_grants.expires_at).where(
    _grants.user_id == bindparam("user_id"),
    _grants.release_id == bindparam("release_id"),
    _grants.tier == bindparam("tier"),
    _grants.revoked_at.is_(None),
)


def still_usable(db: Connection, entry: CachedModel, principal: Principal, now: datetime) -> bool:
    """Whether ``entry`` is still what its name resolves to, and usable by ``principal`` now.

    One query for the release (published, and for an unpinned name still the newest
    published version), one more for a gated tier's grant (live: not revoked, not expired),
    unless the caller belongs to the publishing org: the rule of ``grants.gated_use``.
    """
    ref = entry.ref
    if entry.pinned:
        rows = db.execute(_PINNED_RELEASE, {"release_id": ref.release_id}).all()
    else:
        values = {"org_id": entry.org_id, "name": entry.release_name, "release_id": ref.release_id}
        rows = db.execute(_LATEST_RELEASES, values).all()
    mine = [row for row in rows if row.id == ref.release_id]
    if not mine or mine[0].status != _PUBLISHED:
        return False
    if not entry.pinned:
        newest = max((row for row in rows if row.status == _PUBLISHED), key=_newest_key)
        if newest.id != ref.release_id:
            return False
    if entry.gated and not org_member_of(principal, entry.org_id):
        values = {"user_id": principal.user_id, "release_id": ref.release_id, "tier": ref.tier}
        expiries = db.execute(_GRANT_EXPIRIES, values).scalars()
        if not any(as_utc(expires) > now for expires in expiries):
            return False
    return True


class TokenQuota:
    """Tokens per account per minute, counted in ``rate_limits`` (shared by every replica).

    A call is charged what it may use up front and refunded the rest when it is logged. Old
    windows of a bucket are deleted the first time this process charges it in a new window
    (not on every call: the table stays bounded all the same).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pruned_window = -1
        self._pruned: set[int] = set()
        self._lock = threading.Lock()

    @staticmethod
    def bucket(user_id: int) -> str:
        return f"gen_tokens:{user_id}"

    def charge(self, db: Connection, user_id: int, tokens: int, now: datetime) -> int:
        """Charge ``tokens``; returns the window. Raising rolls the caller's transaction back."""
        epoch = int(now.timestamp())
        window = epoch - epoch % QUOTA_WINDOW_SECONDS
        bucket = self.bucket(user_id)
        with self._lock:
            if window != self._pruned_window:
                self._pruned_window, self._pruned = window, set()
            prune = user_id not in self._pruned
            self._pruned.add(user_id)
        if prune:
            db.execute(_PRUNE, {"bucket": bucket, "window": window})
        values = {"bucket": bucket, "window": window, "n": tokens}
        count = int(db.execute(_CHARGE, values).scalar_one())
        if count > self.limit:
            retry = max(1, window + QUOTA_WINDOW_SECONDS - epoch)
            raise RateLimited(
                f"token quota of {self.limit} per minute reached (this call may use {tokens}); "
                f"try again in {retry} s",
                headers={"Retry-After": str(retry)},
                extra={"retry_after": retry, "quota_tokens_per_minute": self.limit},
            )
        return window

    def refund(self, db: Any, user_id: int, tokens: int, window: int) -> None:
        """Give back ``tokens`` of ``window`` (``db``: a Connection or a Session)."""
        if tokens > 0:
            db.execute(_REFUND, {"bucket": self.bucket(user_id), "window": window, "n": tokens})
