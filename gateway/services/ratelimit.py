"""Fixed-window rate limits whose counters live in the database, shared by every replica.

Which budgets exist (links, attestations, detections, tokens) is defined here once; the
service that does the limited work charges them, so every path to it (API, web page, Hub
redirect) is limited by the same counters.

Each hit is one atomic ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (SQLite >= 3.35 and
PostgreSQL), committed on its own connection: a request that fails afterwards (a wrong client
secret, a forged attestation) still counts, which is the point of limiting it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.errors import GatewayError

_HIT = text(
    "INSERT INTO rate_limits (bucket, window_start, count) VALUES (:bucket, :window, 1) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET count = rate_limits.count + 1 "
    "RETURNING count"
)
# Only this bucket's older windows: the primary key prefix makes it cheap, and the table
# stays bounded by the number of active buckets without a cleanup job.
_PRUNE = text("DELETE FROM rate_limits WHERE bucket = :bucket AND window_start < :window")


class RateLimited(GatewayError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` hits per ``window_seconds`` for one bucket key."""

    bucket: str
    limit: int
    window_seconds: int


def bucket_key(kind: str, *parts: str) -> str:
    """A bounded key: client addresses and ids are hashed, never stored as given."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
    return f"{kind}:{digest}"


def hit(engine: Engine, limits: list[Limit], *, now: datetime) -> None:
    """Count one hit in every bucket; raise 429 with ``Retry-After`` when one is over."""
    epoch = int(now.timestamp())
    worst: int | None = None
    with engine.begin() as connection:
        for item in limits:
            window = epoch - epoch % item.window_seconds
            count = connection.execute(_HIT, {"bucket": item.bucket, "window": window}).scalar_one()
            connection.execute(_PRUNE, {"bucket": item.bucket, "window": window})
            if int(count) > item.limit:
                retry = max(1, window + item.window_seconds - epoch)
                worst = retry if worst is None else max(worst, retry)
    if worst is not None:
        raise RateLimited(
            f"too many requests; try again in {worst} s",
            headers={"Retry-After": str(worst)},
            extra={"retry_after": worst},
        )


def engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def hit_in(session: Session, limits: list[Limit], *, now: datetime) -> None:
    """:func:`hit` from inside a use case: counted on its own connection, so it survives the
    request's rollback. Call it before the use case writes anything in ``session`` (a
    SQLite session holding the write lock would make this connection wait for it)."""
    hit(engine_of(session), limits, now=now)


def link_limits(user_id: int, *, per_account: int, window_seconds: int) -> list[Limit]:
    """Download links issued to one account (``POST /api/links`` and Hub redirects alike)."""
    return [Limit(bucket_key("link-user", str(user_id)), per_account, window_seconds)]


def attestation_limits(
    user_id: int, address: str, *, per_account: int, per_address: int, window_seconds: int
) -> list[Limit]:
    """Attestations submitted per account and per client address (API and web form alike)."""
    return [
        Limit(bucket_key("attest-user", str(user_id)), per_account, window_seconds),
        Limit(bucket_key("attest-addr", address), per_address, window_seconds),
    ]


def evaluation_attestation_limits(
    user_id: int, address: str, *, per_account: int, per_address: int, window_seconds: int
) -> list[Limit]:
    """Evaluation attestations submitted beside releases, per account and per client address:
    each one may be megabytes that are parsed, verified against keys and stored."""
    return [
        Limit(bucket_key("eval-attest-user", str(user_id)), per_account, window_seconds),
        Limit(bucket_key("eval-attest-addr", address), per_address, window_seconds),
    ]


def detection_limits(user_id: int, *, per_account: int, window_seconds: int) -> list[Limit]:
    """Detections per account (API and web page alike): detection is CPU-heavy."""
    return [Limit(bucket_key("detect-user", str(user_id)), per_account, window_seconds)]


def moderation_limits(user_id: int, *, per_account: int, window_seconds: int) -> list[Limit]:
    """``POST /v1/moderations`` calls per account: every input runs the safety checks."""
    return [Limit(bucket_key("moderate-user", str(user_id)), per_account, window_seconds)]


def token_limits(
    address: str,
    account: str | None,
    *,
    per_address: int,
    per_account: int,
    window_seconds: int,
) -> list[Limit]:
    """Token issuance (``/oauth/token`` and ``POST /api/tokens`` alike): per client address,
    and per account (a user or a client id) when known."""
    limits = [Limit(bucket_key("token-addr", address), per_address, window_seconds)]
    if account:
        limits.append(Limit(bucket_key("token-account", account), per_account, window_seconds))
    return limits


def soft_binding_limits(address: str, *, per_address: int, window_seconds: int) -> list[Limit]:
    """The public soft-binding resolution API (``/c2pa/v1/...``), per client address: no
    account is needed to look up a Content Credential, so the address is what is limited."""
    return [Limit(bucket_key("softbinding-addr", address), per_address, window_seconds)]


def report_limits(
    user_id: int, address: str, *, per_account: int, per_address: int, window_seconds: int
) -> list[Limit]:
    """Reports and comments filed per account and per client address (API, Hub routes and web
    form alike): each one may run a detector and adds to the log and a publisher's queue."""
    return [
        Limit(bucket_key("report-user", str(user_id)), per_account, window_seconds),
        Limit(bucket_key("report-addr", address), per_address, window_seconds),
    ]
