"""Set-up for decision races: a gated tier reviewed by hand, pending requests, what was logged."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.db.engine import session_scope
from gateway.db.models import AccessRequest, Grant, LogEntry, Release
from gateway.db.timeutil import utcnow
from gateway.services import access_policy, accounts
from gateway.storage.local import LocalBlobStore
from tests.conftest import Account
from tests.scale.conftest import MakeAccount
from tests.scale.releases import register_release


@dataclass
class Tier:
    """A published release whose gated tier the scenario decides on."""

    publisher: Account
    developer: Account
    release_id: int
    policy_version_id: int
    developer_id: int


def make_gated_tier(
    engine: Engine,
    make_account: MakeAccount,
    blobs_dir: Path,
    org: str,
    *,
    max_grants: int | None = None,
) -> Tier:
    """A published release whose gated tier is reviewed by hand (with a cap, if given)."""
    publisher = make_account(f"pub-{org}", "publisher", org=org)
    developer = make_account(f"dev-{org}")
    files = {"open": {"config.json": b"{}"}, "optimized": {"model.safetensors": b"w" * 64}}
    register_release(
        engine, publisher, files, repo_id=f"{org}/race", blobs=LocalBlobStore(blobs_dir)
    )
    now = utcnow()
    with session_scope(engine, write=True) as session:
        principal = accounts.authenticate(session, publisher.token, now=now)
        release = session.exec(select(Release).where(Release.repo_id == f"{org}/race")).one()
        row = access_policy.change_policy(
            session,
            principal,
            release,
            "optimized",
            mode="manual",
            grant_lifetime_seconds=3600,
            allow={},
            deny={},
            max_grants=max_grants,
            now=now,
        )
        user = accounts.get_user(session, developer.username)
        assert release.id is not None
        assert row.id is not None
        assert user.id is not None
        return Tier(publisher, developer, release.id, row.id, user.id)


def pending_requests(engine: Engine, tier: Tier, count: int) -> list[int]:
    """``count`` submitted, undecided requests (inserted directly: the race is the decision)."""
    now = utcnow()
    rows = [
        AccessRequest(
            user_id=tier.developer_id,
            release_id=tier.release_id,
            tier="optimized",
            key_id="race",
            nonce=secrets.token_hex(16),
            attestation="{}",
            attestation_digest="0" * 64,
            fields_json="{}",
            status="pending",
            policy_version_id=tier.policy_version_id,
            attestation_expires_at=now + timedelta(hours=1),
            created_at=now,
        )
        for _ in range(count)
    ]
    with session_scope(engine, write=True) as session:
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows if r.id is not None]


def statuses(engine: Engine, ids: list[int]) -> dict[int, str]:
    with Session(engine) as session:
        rows = session.exec(select(AccessRequest).where(col(AccessRequest.id).in_(ids)))
        return {r.id: r.status for r in rows if r.id is not None}


def grants_per_request(engine: Engine, ids: list[int]) -> Counter[int]:
    with Session(engine) as session:
        rows = session.exec(select(Grant.request_id).where(col(Grant.request_id).in_(ids)))
        return Counter(rows)


def logged(engine: Engine, action: str, field: str, ids: list[int]) -> Counter[int]:
    """How many ``action`` entries name each of ``ids`` in their ``field``."""
    wanted = set(ids)
    with Session(engine) as session:
        entries = session.exec(select(LogEntry.entry).where(LogEntry.action == action))
        named = (json.loads(e)["fields"].get(field) for e in entries)
        return Counter(i for i in named if i in wanted)
