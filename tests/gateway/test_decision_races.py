"""Decision races replayed step by step, on SQLite and PostgreSQL (issue #14, items 4 and 7).

Each test pauses one use case at the moment its old version was exposed (it had read the
state it decides on but not yet written), runs the rival use case to completion in another
thread (or until it blocks on the first one's lock), then lets the first one finish. Exactly
one decision must happen, the loser must get a typed 409 carrying the state that won, and the
log must hold exactly one entry for the transition. No timing is asserted: the wait for a
rival that is blocked only decides how long the test takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.db.engine import begin_write, session_scope
from gateway.db.models import Grant, LogEntry, PublicKeyRecord, Role, User
from gateway.db.timeutil import utcnow
from gateway.errors import Conflict
from gateway.services import access, accounts, keys
from licensing.keys import PrivateKey
from tests.conftest import Account
from tests.scale.decisions import (
    Tier,
    grants_per_request,
    logged,
    make_gated_tier,
    pending_requests,
    statuses,
)

MakeAccount = Callable[..., Account]
# How long the paused use case waits for a rival that may be blocked on its lock.
RIVAL_WAIT = 2.0


@dataclass
class Rival:
    result: Any = None
    error: BaseException | None = None
    thread: threading.Thread | None = None
    fired: bool = False

    def join(self) -> None:
        assert self.fired, "the pause point was never reached"
        assert self.thread is not None
        self.thread.join(60)


@contextmanager
def paused_at(engine: Engine, marker: str, rival: Callable[[], Any]) -> Iterator[Rival]:
    """The first time this thread is about to run SQL containing ``marker``, run ``rival``."""
    me = threading.get_ident()
    outcome = Rival()

    def run_rival() -> None:
        try:
            outcome.result = rival()
        except BaseException as exc:  # reported by the test
            outcome.error = exc

    def hook(*args: Any) -> None:
        statement: str = args[2]
        if outcome.fired or threading.get_ident() != me or marker not in statement:
            return
        outcome.fired = True
        outcome.thread = threading.Thread(target=run_rival)
        outcome.thread.start()
        outcome.thread.join(RIVAL_WAIT)

    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield outcome
    finally:
        event.remove(engine, "before_cursor_execute", hook)


def as_account(engine: Engine, who: Account, use: Callable[..., Any]) -> Any:
    """Run ``use(session, principal)`` in a session shaped like a request's."""
    with session_scope(engine) as session:
        principal = accounts.authenticate(session, who.token, now=utcnow())
        return use(session, principal)


def attempt(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except Conflict as exc:
        return None, exc


@dataclass
class Decisions:
    engine: Engine
    tier: Tier
    outcomes: list[tuple[Any, BaseException | None]] = field(default_factory=list)

    def approve(self, request_id: int) -> Any:
        return as_account(
            self.engine,
            self.tier.publisher,
            lambda s, p: access.approve_request(s, p, request_id, now=utcnow()),
        )

    def deny(self, request_id: int) -> Any:
        return as_account(
            self.engine,
            self.tier.publisher,
            lambda s, p: access.deny_request(s, p, request_id, reason="no", now=utcnow()),
        )

    def revoke(self, grant_id: int) -> Any:
        return as_account(
            self.engine,
            self.tier.publisher,
            lambda s, p: access.revoke_grant(s, p, grant_id, reason="r", now=utcnow()),
        )


@pytest.fixture
def decisions(engine: Engine, make_account: MakeAccount, tmp_path: Path) -> Decisions:
    # A cap far away: the approval path then counts live grants, the old race window.
    tier = make_gated_tier(engine, make_account, tmp_path / "blobs", "step", max_grants=100)
    return Decisions(engine, tier)


def the_loser(rival: Rival, mine: tuple[Any, BaseException | None]) -> Conflict:
    """Exactly one of the two failed, with a typed conflict."""
    errors = [e for e in (rival.error, mine[1]) if e is not None]
    assert len(errors) == 1, errors
    assert isinstance(errors[0], Conflict), repr(errors[0])
    return errors[0]


def test_double_approval_race_issues_one_grant_and_a_409_not_a_500(
    decisions: Decisions,
) -> None:
    (request_id,) = pending_requests(decisions.engine, decisions.tier, 1)
    with paused_at(decisions.engine, "FROM grants", lambda: decisions.approve(request_id)) as rival:
        mine = attempt(lambda: decisions.approve(request_id))
    rival.join()
    loser = the_loser(rival, mine)
    assert loser.code == "request_already_decided"
    assert loser.extra["state"] == "approved"
    assert grants_per_request(decisions.engine, [request_id]) == {request_id: 1}
    assert logged(decisions.engine, "grant.approved", "request_id", [request_id]) == {request_id: 1}


def test_approve_deny_race_leaves_no_denied_request_holding_a_grant(
    decisions: Decisions,
) -> None:
    (request_id,) = pending_requests(decisions.engine, decisions.tier, 1)
    with paused_at(decisions.engine, "FROM grants", lambda: decisions.deny(request_id)) as rival:
        mine = attempt(lambda: decisions.approve(request_id))
    rival.join()
    loser = the_loser(rival, mine)
    final = statuses(decisions.engine, [request_id])[request_id]
    assert loser.code == "request_already_decided"
    assert loser.extra["state"] == final
    grants = grants_per_request(decisions.engine, [request_id])[request_id]
    assert grants == (1 if final == "approved" else 0)
    approvals = logged(decisions.engine, "grant.approved", "request_id", [request_id])
    denials = logged(decisions.engine, "grant.denied", "request_id", [request_id])
    assert approvals[request_id] + denials[request_id] == 1


def test_double_revocation_race_revokes_and_logs_once(decisions: Decisions) -> None:
    (request_id,) = pending_requests(decisions.engine, decisions.tier, 1)
    grant = decisions.approve(request_id)
    with paused_at(decisions.engine, "FROM releases", lambda: decisions.revoke(grant.id)) as rival:
        mine = attempt(lambda: decisions.revoke(grant.id))
    rival.join()
    loser = the_loser(rival, mine)
    assert loser.code == "grant_already_revoked"
    assert loser.extra["state"] == "revoked"
    assert logged(decisions.engine, "grant.revoked", "grant_id", [grant.id]) == {grant.id: 1}


def test_grant_cap_race_never_issues_more_than_the_cap(
    engine: Engine, make_account: MakeAccount, tmp_path: Path
) -> None:
    tier = make_gated_tier(engine, make_account, tmp_path / "blobs", "capstep", max_grants=1)
    steps = Decisions(engine, tier)
    first, second = pending_requests(engine, tier, 2)
    # Paused at the first write, after the old code had counted the live grants.
    with paused_at(engine, "UPDATE access_requests", lambda: steps.approve(second)) as rival:
        mine = attempt(lambda: steps.approve(first))
    rival.join()
    loser = the_loser(rival, mine)
    assert loser.code == "grant_limit_reached"
    with Session(engine) as session:
        live = session.exec(select(Grant).where(col(Grant.revoked_at).is_(None))).all()
    assert len(live) == 1
    # The refused request is still pending: the publisher may decide it once room is made.
    assert sorted(statuses(engine, [first, second]).values()) == ["approved", "pending"]


def test_concurrent_registration_of_one_username_is_a_409_not_a_503(engine: Engine) -> None:
    def register() -> Any:
        with session_scope(engine) as session:
            return accounts.create_user(session, "twin", Role.developer)

    # Paused after the check that the name is free, before the insert.
    with paused_at(engine, "INSERT INTO users", register) as rival:
        mine = attempt(register)
    rival.join()
    loser = the_loser(rival, mine)
    assert loser.status == 409
    with Session(engine) as session:
        assert len(session.exec(select(User).where(User.username == "twin")).all()) == 1


def test_concurrent_registration_of_one_key_by_two_accounts_is_a_409(
    engine: Engine, make_account: MakeAccount
) -> None:
    first, second = make_account("k-one"), make_account("k-two")
    pem = PrivateKey.generate("ed25519").public_key.to_pem().decode()

    def register(who: Account) -> Any:
        return as_account(
            engine, who, lambda s, p: keys.register_key(s, p, pem=pem, name="k", now=utcnow())
        )

    with paused_at(engine, "INSERT INTO public_keys", lambda: register(second)) as rival:
        mine = attempt(lambda: register(first))
    rival.join()
    loser = the_loser(rival, mine)
    assert loser.code == "key_already_registered"
    with Session(engine) as session:
        assert len(session.exec(select(PublicKeyRecord)).all()) == 1
        assert list(session.exec(select(LogEntry.action))).count("key.registered") == 1


def test_sqlite_read_then_write_under_threads_never_locks_and_never_loses_an_update(
    tmp_path: Path,
) -> None:
    """Many threads read a counter, then write it back, in request-shaped sessions."""
    from gateway.db.engine import make_engine

    hammered = make_engine(f"sqlite:///{tmp_path / 'hammer.db'}")
    with hammered.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        connection.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
    errors: list[str] = []
    threads, rounds = 8, 40

    def work() -> None:
        for _ in range(rounds):
            try:
                with Session(hammered, expire_on_commit=False) as session:
                    session.execute(text("SELECT n FROM counter")).all()  # e.g. authentication
                    begin_write(session)
                    n = session.execute(text("SELECT n FROM counter")).scalar_one()
                    session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
                    session.commit()
                with session_scope(hammered, write=True) as session:
                    n = session.execute(text("SELECT n FROM counter")).scalar_one()
                    session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
            except Exception as exc:
                errors.append(str(exc).splitlines()[0])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with hammered.connect() as connection:
        total = connection.exec_driver_sql("SELECT n FROM counter").scalar_one()
    hammered.dispose()
    assert errors == []
    assert total == threads * rounds * 2


def test_a_unique_violation_nobody_expected_answers_409_conflict_not_503(app: Any) -> None:
    """The net under the races services do not name: a constraint refusal is a conflict."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import IntegrityError

    assert isinstance(app, FastAPI)

    def collide() -> None:
        raise IntegrityError("INSERT ...", {}, Exception("UNIQUE constraint failed: x.y"))

    app.add_api_route("/test-collide", collide, methods=["POST"])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/test-collide")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "conflict"


def test_sqlite_savepoint_that_reads_then_writes_after_another_commit_is_not_locked_out(
    tmp_path: Path,
) -> None:
    """The web access form's shape: a savepoint, reads, another writer commits, then a write.

    The old driver mode opened a deferred transaction at the SAVEPOINT; its write then found
    the snapshot stale and failed at once with "database is locked" (SQLITE_BUSY_SNAPSHOT).
    """
    from gateway.db.engine import make_engine

    shared = make_engine(f"sqlite:///{tmp_path / 'savepoint.db'}")
    with shared.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
        connection.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
    other_done: list[str] = []

    def other_writer() -> None:
        with session_scope(shared) as session:
            session.execute(text("UPDATE counter SET n = n + 10"))
        other_done.append("committed")

    with Session(shared) as session:
        with session.begin_nested():
            n = session.execute(text("SELECT n FROM counter")).scalar_one()
            other = threading.Thread(target=other_writer)
            other.start()
            other.join(RIVAL_WAIT)  # it waits for our lock now; it used to commit here
            session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        session.commit()
    other.join(60)
    with shared.connect() as connection:
        total = connection.exec_driver_sql("SELECT n FROM counter").scalar_one()
    shared.dispose()
    assert other_done == ["committed"]
    assert total == 11
