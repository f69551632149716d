"""Grant decisions raced across two real gateway processes on one database (issue #14, item 4).

Two `tiergate serve` replicas share one database: PostgreSQL, and SQLite (one file, two
processes). Every round sends conflicting decisions for the same objects to both replicas at
once; afterwards exactly one decision per object has happened, the losers got 409 with the
state that won, and the log holds exactly the transitions that happened.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.db.engine import session_scope
from gateway.db.models import Grant, Release
from gateway.db.timeutil import utcnow
from gateway.services import access_policy, accounts, keys
from gateway.storage.local import LocalBlobStore
from licensing.keys import PrivateKey
from tests.conftest import Account, _truncate_all
from tests.gateway.release_fixtures import publish_test_release
from tests.gateway.test_access import attest
from tests.scale.conftest import MakeAccount, blob_holder, make_account_in
from tests.scale.decisions import (
    Tier,
    grants_per_request,
    logged,
    make_gated_tier,
    pending_requests,
    statuses,
)
from tests.scale.replicas import running_replicas

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROUNDS = 6
PER_ROUND = 8
ENV = {
    "TIERGATE_RATE_LIMIT_WINDOW_SECONDS": "3600",
    "TIERGATE_RATE_LIMIT_ATTESTATIONS_PER_ACCOUNT": "100000",
    "TIERGATE_RATE_LIMIT_ATTESTATIONS_PER_ADDRESS": "100000",
}


@dataclass(frozen=True)
class Pair:
    """Two replicas on one database."""

    backend: str
    urls: list[str]
    engine: Engine
    data_dir: Path
    make_account: MakeAccount


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    from gateway.db.engine import make_engine

    root = tmp_path_factory.mktemp(f"pair-{request.param}")
    data_dir = root / "shared"
    data_dir.mkdir()
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database_url")
        _truncate_all(url)
    else:
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, data_dir / "tiergate.db")
        url = f"sqlite:///{data_dir / 'tiergate.db'}"
    engine = make_engine(url)
    try:
        with running_replicas(2, data_dir=data_dir, database_url=url, env=ENV) as replicas:
            yield Pair(request.param, replicas.urls, engine, data_dir, make_account_in(engine))
    finally:
        engine.dispose()


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call in its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@dataclass(frozen=True)
class Outcome:
    status: int
    code: str | None
    state: str | None


def post(url: str, who: Account, path: str, body: dict[str, Any] | None = None) -> Outcome:
    response = httpx.post(f"{url}{path}", json=body, headers=who.headers, timeout=60)
    data = response.json()
    if response.status_code == 200:
        return Outcome(200, None, None)
    return Outcome(response.status_code, data.get("code"), data.get("state"))


def gated_tier(pair: Pair, org: str, *, max_grants: int | None = None) -> Tier:
    return make_gated_tier(
        pair.engine, pair.make_account, pair.data_dir / "blobs", org, max_grants=max_grants
    )


def test_double_approval_across_replicas_issues_one_grant_and_one_409(pair: Pair) -> None:
    tier = gated_tier(pair, f"dbl{pair.backend}")
    a, b = pair.urls
    for _ in range(ROUNDS):
        ids = pending_requests(pair.engine, tier, PER_ROUND)
        calls = [
            lambda url=url, i=i: (i, post(url, tier.publisher, f"/api/access/requests/{i}/approve"))
            for i in ids
            for url in (a, b)
        ]
        results = all_at_once(calls)
        per_request: dict[int, list[Outcome]] = {i: [] for i in ids}
        for i, outcome in results:
            per_request[i].append(outcome)
        for i, outcomes in per_request.items():
            assert sorted(o.status for o in outcomes) == [200, 409], (i, outcomes)
            loser = next(o for o in outcomes if o.status == 409)
            assert (loser.code, loser.state) == ("request_already_decided", "approved")
        assert set(statuses(pair.engine, ids).values()) == {"approved"}
        assert grants_per_request(pair.engine, ids) == Counter(dict.fromkeys(ids, 1))
        assert logged(pair.engine, "grant.approved", "request_id", ids) == Counter(
            dict.fromkeys(ids, 1)
        )


def test_approve_on_one_replica_deny_on_the_other_exactly_one_decision_wins(pair: Pair) -> None:
    tier = gated_tier(pair, f"ad{pair.backend}")
    a, b = pair.urls
    reviewer = tier.publisher
    for round_number in range(ROUNDS):
        ids = pending_requests(pair.engine, tier, PER_ROUND)
        calls: list[Callable[[], Any]] = []
        for n, i in enumerate(ids):
            # Alternate which replica approves, so neither is always the faster one.
            approver, denier = (a, b) if (n + round_number) % 2 == 0 else (b, a)
            calls.append(
                lambda url=approver, i=i: (
                    i,
                    "approve",
                    post(url, reviewer, f"/api/access/requests/{i}/approve"),
                )
            )
            calls.append(
                lambda url=denier, i=i: (
                    i,
                    "deny",
                    post(url, reviewer, f"/api/access/requests/{i}/deny", {"reason": "no"}),
                )
            )
        results = all_at_once(calls)
        final = statuses(pair.engine, ids)
        grants = grants_per_request(pair.engine, ids)
        approvals = logged(pair.engine, "grant.approved", "request_id", ids)
        denials = logged(pair.engine, "grant.denied", "request_id", ids)
        for i in ids:
            outcomes = {action: o for j, action, o in results if j == i}
            winner = "approve" if final[i] == "approved" else "deny"
            loser = outcomes["deny" if winner == "approve" else "approve"]
            assert final[i] in ("approved", "denied")
            assert outcomes[winner].status == 200, (i, outcomes)
            assert (loser.status, loser.code, loser.state) == (
                409,
                "request_already_decided",
                final[i],
            ), (i, outcomes)
            # Denied requests hold no grant; each request has exactly one decision logged.
            assert grants[i] == (1 if final[i] == "approved" else 0)
            assert approvals[i] + denials[i] == 1
            assert approvals[i] == grants[i]


def test_double_revocation_across_replicas_revokes_and_logs_once(pair: Pair) -> None:
    tier = gated_tier(pair, f"rv{pair.backend}")
    a, b = pair.urls
    for _ in range(ROUNDS):
        ids = pending_requests(pair.engine, tier, PER_ROUND)
        for i in ids:  # set-up, one at a time: a grant per request
            assert post(a, tier.publisher, f"/api/access/requests/{i}/approve").status == 200
        with Session(pair.engine) as session:
            grant_ids = list(session.exec(select(Grant.id).where(col(Grant.request_id).in_(ids))))
        calls = [
            lambda url=url, g=g: (
                g,
                post(url, tier.publisher, f"/api/access/grants/{g}/revoke", {"reason": "r"}),
            )
            for g in grant_ids
            for url in (a, b)
        ]
        results = all_at_once(calls)
        for g in grant_ids:
            outcomes = [o for h, o in results if h == g]
            assert sorted(o.status for o in outcomes) == [200, 409], (g, outcomes)
            loser = next(o for o in outcomes if o.status == 409)
            assert (loser.code, loser.state) == ("grant_already_revoked", "revoked")
        assert logged(pair.engine, "grant.revoked", "grant_id", grant_ids) == Counter(
            dict.fromkeys(grant_ids, 1)
        )


def test_grant_cap_holds_under_simultaneous_approvals_on_two_replicas(pair: Pair) -> None:
    cap, requested = 5, 12
    tier = gated_tier(pair, f"cap{pair.backend}", max_grants=cap)
    a, b = pair.urls
    for _ in range(4):
        ids = pending_requests(pair.engine, tier, requested)
        calls = [
            lambda url=url, i=i: post(url, tier.publisher, f"/api/access/requests/{i}/approve")
            for i in ids
            for url in (a, b)
        ]
        results = all_at_once(calls)
        assert Counter(o.status for o in results) == {200: cap, 409: 2 * requested - cap}
        assert {o.code for o in results if o.status == 409} <= {
            "request_already_decided",
            "grant_limit_reached",
        }
        final = Counter(statuses(pair.engine, ids).values())
        assert final == {"approved": cap, "pending": requested - cap}
        assert sum(grants_per_request(pair.engine, ids).values()) == cap
        assert sum(logged(pair.engine, "grant.approved", "request_id", ids).values()) == cap
        # Make room for the next round (set-up, not under test).
        with session_scope(pair.engine, write=True) as session:
            session.execute(
                update(Grant)
                .where(col(Grant.request_id).in_(ids), col(Grant.revoked_at).is_(None))
                .values(revoked_at=utcnow())
            )


def test_auto_approvals_on_two_replicas_never_exceed_the_grant_cap(
    pair: Pair, tmp_path: Path
) -> None:
    cap, submitted = 4, 10
    org = f"auto{pair.backend}"
    publisher = pair.make_account(f"pub-{org}", "publisher", org=org)
    release = publish_test_release(
        blob_holder(LocalBlobStore(pair.data_dir / "blobs")),
        pair.engine,
        publisher,
        tmp_path,
        repo_id=f"{org}/tiny",
    )
    developers = [pair.make_account(f"{org}-dev{n}") for n in range(submitted)]
    signing_keys = [PrivateKey.generate("ed25519") for _ in developers]
    now = utcnow()
    with session_scope(pair.engine, write=True) as session:
        for who, key in zip(developers, signing_keys, strict=True):
            principal = accounts.authenticate(session, who.token, now=now)
            pem = key.public_key.to_pem().decode()
            keys.register_key(session, principal, pem=pem, name="k", now=now)
        owner = accounts.authenticate(session, publisher.token, now=now)
        row = session.exec(select(Release).where(Release.repo_id == release.repo_id)).one()
        access_policy.change_policy(
            session,
            owner,
            row,
            "optimized",
            mode="auto",
            grant_lifetime_seconds=3600,
            allow={},
            deny={},
            max_grants=cap,
            now=now,
        )
        release_id = row.id
    a, b = pair.urls
    for _ in range(3):
        envelopes = [
            attest(key, release, who.username)
            for who, key in zip(developers, signing_keys, strict=True)
        ]

        def submit(n: int, envelope: str) -> Callable[[], httpx.Response]:
            body = {"repo_id": release.repo_id, "version": release.version}
            return lambda: httpx.post(
                f"{(a, b)[n % 2]}/api/access/requests",
                json={**body, "attestation": envelope},
                headers=developers[n].headers,
                timeout=60,
            )

        responses = all_at_once([submit(n, e) for n, e in enumerate(envelopes)])
        assert [r.status_code for r in responses] == [201] * submitted, responses[0].text
        decided = Counter(r.json()["status"] for r in responses)
        # The policy approves up to the cap; the rest wait for the publisher.
        assert decided == {"approved": cap, "pending": submitted - cap}
        with Session(pair.engine) as session:
            live = session.exec(
                select(Grant.id).where(
                    Grant.release_id == release_id, col(Grant.revoked_at).is_(None)
                )
            ).all()
            request_ids = [r.json()["id"] for r in responses]
        assert len(live) == cap
        assert sum(logged(pair.engine, "grant.approved", "request_id", request_ids).values()) == cap
        with session_scope(pair.engine, write=True) as session:  # room for the next round
            session.execute(
                update(Grant)
                .where(col(Grant.release_id) == release_id, col(Grant.revoked_at).is_(None))
                .values(revoked_at=utcnow())
            )


def test_simultaneous_registrations_of_one_name_or_key_are_409_never_503(pair: Pair) -> None:
    admin = pair.make_account(f"admin-{pair.backend}", "admin")
    a, b = pair.urls
    name = f"twin-{pair.backend}"

    def create(n: int) -> Callable[[], httpx.Response]:
        # Same new org for all: the org row is raced too.
        body = {"username": name, "role": "publisher", "org": f"twins-{pair.backend}"}
        return lambda: httpx.post(
            f"{(a, b)[n % 2]}/api/admin/users", json=body, headers=admin.headers, timeout=60
        )

    users = all_at_once([create(n) for n in range(12)])
    assert Counter(r.status_code for r in users) == {201: 1, 409: 11}
    assert {r.json()["code"] for r in users if r.status_code == 409} == {"conflict"}

    owners = [pair.make_account(f"keyrace-{pair.backend}-{n}") for n in range(12)]
    pem = PrivateKey.generate("ed25519").public_key.to_pem().decode()

    def register(n: int) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(
            f"{(a, b)[n % 2]}/api/keys",
            json={"pem": pem, "name": "k"},
            headers=owners[n].headers,
            timeout=60,
        )

    registered = all_at_once([register(n) for n in range(12)])
    assert Counter(r.status_code for r in registered) == {201: 1, 409: 11}
    codes = {r.json()["code"] for r in registered if r.status_code == 409}
    assert codes == {"key_already_registered"}
