"""Tamper evidence: any edit, deletion, insertion or reordering of stored log rows is caught."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from gateway.app import create_app
from gateway.config import Settings
from gateway.db.timeutil import utcnow
from gateway.ledger.errors import LogTampered
from gateway.ledger.integrate import integrate, latest_checkpoint
from gateway.ledger.runtime import LedgerRuntime
from gateway.ledger.selfcheck import check_stored_log
from licensing.errors import TlogInconsistentError
from tests.gateway.test_health_and_errors import assert_problem
from tests.gateway.test_ledger import append_events, ledger_of

BASE_URL = "http://127.0.0.1:8000"
ZERO = "00" * 32


def _swap_entries(connection: Connection, a: int, b: int) -> None:
    rows: dict[int, str] = dict(
        connection.execute(
            text("SELECT idx, entry FROM log_entries WHERE idx IN (:a, :b)"), {"a": a, "b": b}
        ).all()
    )
    for idx, other in ((a, b), (b, a)):
        connection.execute(
            text("UPDATE log_entries SET entry = :e WHERE idx = :i"), {"e": rows[other], "i": idx}
        )


def _sql(statement: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        connection.execute(text(statement), {"zero": ZERO, "now": utcnow()})

    return run


# name -> (tamper, what the self-check must say)
TAMPERS: dict[str, tuple[Callable[[Connection], None], str]] = {
    "edit_entry": (
        _sql("UPDATE log_entries SET entry = replace(entry, 'test/3', 'test/X') WHERE idx = 3"),
        "entry_edited",
    ),
    "delete_entry": (_sql("DELETE FROM log_entries WHERE idx = 4"), "entry_deleted"),
    "delete_last_entry": (_sql("DELETE FROM log_entries WHERE idx = 9"), "entries_missing"),
    "insert_entry": (
        _sql(
            "INSERT INTO log_entries (idx, entry, action, created_at) "
            "VALUES (10, '{}', 'forged', :now)"
        ),
        "entry_inserted",
    ),
    "reorder_entries": (lambda c: _swap_entries(c, 2, 5), "entries_reordered"),
    "swap_neighbours": (lambda c: _swap_entries(c, 6, 7), "entries_reordered"),
    "edit_leaf_node": (
        _sql('UPDATE log_nodes SET hash = :zero WHERE level = 0 AND "index" = 1'),
        "entry_edited",
    ),
    "edit_inner_node": (
        _sql('UPDATE log_nodes SET hash = :zero WHERE level = 2 AND "index" = 0'),
        "node_mismatch",
    ),
    "delete_node": (
        _sql('DELETE FROM log_nodes WHERE level = 1 AND "index" = 2'),
        "node_missing",
    ),
    "edit_state": (_sql("UPDATE log_state SET root_hash = :zero"), "root_mismatch"),
    "forge_checkpoint": (
        _sql("UPDATE log_checkpoints SET note = replace(note, '\n10\n', '\n11\n')"),
        "note_",
    ),
    "delete_checkpoint": (_sql("DELETE FROM log_checkpoints WHERE size = 10"), "root_mismatch"),
}


def _build_log(engine: Engine, key: Ed25519PrivateKey) -> LedgerRuntime:
    runtime = LedgerRuntime(engine, key, BASE_URL)
    append_events(engine, 6)
    runtime.integrate_now()
    append_events(engine, 4)
    runtime.integrate_now()
    assert runtime.self_check() is None
    return runtime


def test_self_check_detects_every_kind_of_tampering(engine: Engine) -> None:
    runtime = _build_log(engine, Ed25519PrivateKey.generate())
    key = runtime.key()
    found: dict[str, str | None] = {}
    for name, (tamper, _) in TAMPERS.items():
        with engine.connect() as connection:
            transaction = connection.begin()
            tamper(connection)
            with Session(bind=connection) as session:
                found[name] = check_stored_log(session, key)
            transaction.rollback()
    for name, (_, expected) in TAMPERS.items():
        assert found[name] is not None, name
        assert found[name].startswith(expected), (name, found[name])  # type: ignore[union-attr]
    # Bounded mode still catches what lies within its window.
    with engine.connect() as connection:
        transaction = connection.begin()
        TAMPERS["edit_entry"][0](connection)
        with Session(bind=connection) as session:
            assert check_stored_log(session, key, max_entries=8) == (
                "entry_edited: entry 3 does not match its stored hash"
            )
            assert check_stored_log(session, key, max_entries=5) is None
        transaction.rollback()


def test_integration_refuses_to_sign_over_a_tampered_tree(engine: Engine) -> None:
    runtime = _build_log(engine, Ed25519PrivateKey.generate())
    with engine.begin() as connection:
        # Node (1, 4) covers leaves 8-9: on the right edge, and in the next consistency proof.
        connection.execute(
            text('UPDATE log_nodes SET hash = :z WHERE level = 1 AND "index" = 4'), {"z": ZERO}
        )
    append_events(engine, 3)
    with Session(engine) as session, pytest.raises(TlogInconsistentError):
        integrate(session, runtime.key(), now=utcnow())
    with pytest.raises(LogTampered):
        runtime.integrate_now()
    assert runtime.readiness().startswith("tampered: tlog_inconsistent")
    with pytest.raises(LogTampered):
        runtime.integrate_now()  # sticky: no retry can sign
    with Session(engine) as session:
        row = latest_checkpoint(session)
        assert row is not None
        assert row.size == 10


def test_restarted_gateway_reports_tampering_and_stops_signing(
    engine: Engine, settings: Settings
) -> None:
    # No running app in the first phase: a live replica's loop would integrate the appends
    # below (it only re-checks O(log n) nodes per batch; the full check runs at start-up).
    first = create_app(settings, engine=engine)
    append_events(engine, 5)
    ledger_of(first).integrate_now()
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET entry = replace(entry, 'test/1', 'test/Y') WHERE idx = 1")
        )
    restarted = create_app(settings, engine=engine)
    with TestClient(restarted, raise_server_exceptions=False) as second:
        body = assert_problem(second.get("/readyz"), 503, "not_ready")
        assert body["checks"]["log"].startswith("tampered: entry_edited: entry 1")
        assert "log: tampered: entry_edited" in body["detail"]
        append_events(engine, 2)  # appends are still recorded...
        with pytest.raises(LogTampered):
            ledger_of(restarted).integrate_now()  # ...but never signed
        assert second.get("/log/checkpoint").text.splitlines()[1] == "5"
