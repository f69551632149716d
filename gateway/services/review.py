"""What a publisher's review page shows: gated tiers, what still holds for a pending
request, and the org's daily downloads and generations from the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from gateway.db.models import (
    AccessRequest,
    LogEntry,
    PublicKeyRecord,
    Release,
    ReleaseStatus,
    ReleaseTier,
)
from gateway.db.timeutil import as_utc

__all__ = ["DailyCounts", "daily_counts", "gated_tiers", "request_checks"]


def gated_tiers(session: Session, org_id: int) -> list[tuple[Release, ReleaseTier]]:
    rows = session.exec(
        select(Release, ReleaseTier)
        .join(ReleaseTier, col(ReleaseTier.release_id) == col(Release.id))
        .where(
            Release.org_id == org_id,
            Release.status == ReleaseStatus.published.value,
            ReleaseTier.gated == True,  # noqa: E712 (SQL expression)
        )
        .order_by(col(Release.repo_id), col(Release.id))
    )
    return [(r, t) for r, t in rows]


def request_checks(session: Session, row: AccessRequest, now: datetime) -> list[tuple[str, str]]:
    """What holds now, beyond the signature verified at submission: the key, the expiry."""
    key = session.exec(select(PublicKeyRecord).where(PublicKeyRecord.key_id == row.key_id)).first()
    checks = [("verified", "signature verified at submission")]
    if key is None or key.revoked_at is not None or key.user_id != row.user_id:
        checks.append(("revoked", "signing key revoked since"))
    else:
        checks.append(("verified", "signing key still registered"))
    if as_utc(row.attestation_expires_at) <= now:
        checks.append(("expired", "attestation expired"))
    return checks


@dataclass(frozen=True, slots=True)
class DailyCounts:
    days: list[str]
    downloads: list[int]
    generations: list[int]


DOWNLOAD_ACTIONS = ("download.file", "download.link")
GENERATION_PREFIX = "generation"
DAYS = 14


def daily_counts(session: Session, org_id: int, *, now: datetime, days: int = DAYS) -> DailyCounts:
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    labels = [(start + timedelta(days=i)).strftime("%m-%d") for i in range(days)]
    downloads, generations = [0] * days, [0] * days
    rows = session.exec(
        select(LogEntry.action, LogEntry.created_at).where(
            LogEntry.org_id == org_id, col(LogEntry.created_at) >= start
        )
    )
    for action, created in rows:
        slot = (as_utc(created) - start).days
        if not 0 <= slot < days:
            continue
        if action in DOWNLOAD_ACTIONS:
            downloads[slot] += 1
        elif action.startswith(GENERATION_PREFIX):
            generations[slot] += 1
    return DailyCounts(labels, downloads, generations)
