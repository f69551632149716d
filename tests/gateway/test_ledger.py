"""The gateway's transparency log: integration, checkpoints, proofs, receipts, visibility."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.engine import session_scope
from gateway.db.models import LogEntry, User
from gateway.db.timeutil import utcnow
from gateway.ledger.events import Actor, record_event
from gateway.ledger.integrate import origin_from_base_url
from gateway.ledger.runtime import LedgerRuntime
from licensing.tlog.audit import check_consistency
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint
from licensing.tlog.merkle import leaf_hash, root_from_leaf_hashes, verify_inclusion
from licensing.tlog.note import Verifier
from licensing.tlog.receipt import verify_receipt
from tests.conftest import Account
from tests.gateway.test_health_and_errors import assert_problem

MakeAccount = Callable[..., Account]


def append_events(
    engine: Engine,
    count: int,
    *,
    user_id: int | None = None,
    org_id: int | None = None,
    per_transaction: int = 50,
) -> list[int]:
    """Append ``count`` events straight through `record_event`, as services do."""
    actor = Actor(kind="account", name=f"user{user_id}", user_id=user_id)
    indices: list[int] = []
    while len(indices) < count:
        with session_scope(engine) as session:
            for _ in range(min(per_transaction, count - len(indices))):
                indices.append(
                    record_event(
                        session,
                        action="test.event",
                        actor=actor,
                        resource=f"test/{len(indices)}",
                        now=utcnow(),
                        org_id=org_id,
                        fields={"n": len(indices)},
                    )
                )
    return indices


def stored_entries(session: Session) -> list[bytes]:
    rows = session.exec(select(LogEntry).order_by(LogEntry.idx)).all()  # type: ignore[arg-type]
    return [row.entry.encode() for row in rows]


def ledger_of(app: FastAPI) -> LedgerRuntime:
    runtime: LedgerRuntime = app.state.ledger
    return runtime


def verifier_of(client: TestClient) -> Verifier:
    return Verifier.from_vkey(client.get("/log/vkey").text.strip())


def checkpoint_of(client: TestClient) -> tuple[str, Checkpoint]:
    response = client.get("/log/checkpoint")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, open_checkpoint(response.text, [verifier_of(client)])


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def user_id_of(engine: Engine, username: str) -> tuple[int, int | None]:
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == username)).one()
        assert user.id is not None
        return user.id, user.org_id


def test_appends_produce_signed_checkpoints(
    app: FastAPI, client: TestClient, engine: Engine
) -> None:
    _, empty = checkpoint_of(client)
    assert empty.size == 0
    assert empty.origin == origin_from_base_url(app.state.gateway.settings.base_url)
    assert empty.origin == "127.0.0.1:8000/tiergate-log"
    append_events(engine, 5)
    ledger_of(app).integrate_now()
    _, checkpoint = checkpoint_of(client)
    assert checkpoint.size == 5
    with Session(engine) as session:
        entries = stored_entries(session)
    assert checkpoint.root_hash == root_from_leaf_hashes(leaf_hash(e) for e in entries)
    assert ledger_of(app).integrate_now() is None  # idle: nothing new, nothing signed
    assert client.get("/readyz").json()["checks"] == {"database": "ok", "schema": "ok"}


def test_background_loop_integrates_without_being_asked(
    app: FastAPI, client: TestClient, engine: Engine
) -> None:
    import time

    append_events(engine, 3)
    deadline = time.monotonic() + 10
    while checkpoint_of(client)[1].size < 3:
        assert time.monotonic() < deadline, "the integration loop did not run"
        time.sleep(0.05)


def test_inclusion_and_consistency_proofs_verify(
    app: FastAPI, client: TestClient, engine: Engine
) -> None:
    append_events(engine, 7)
    ledger_of(app).integrate_now()
    old_note, old = checkpoint_of(client)
    append_events(engine, 6)
    ledger_of(app).integrate_now()
    _, new = checkpoint_of(client)
    assert (old.size, new.size) == (7, 13)
    with Session(engine) as session:
        entries = stored_entries(session)
    for size, root in ((7, old.root_hash), (13, new.root_hash)):
        for index in range(size):
            body = client.get("/log/proof/inclusion", params={"index": index, "size": size}).json()
            assert b64(body["leaf_hash"]) == leaf_hash(entries[index])
            proof = [b64(h) for h in body["inclusion_path"]]
            verify_inclusion(leaf_hash(entries[index]), index, size, proof, root)
            assert b64(body["root_hash"]) == root
    assert client.get("/log/proof/inclusion", params={"index": 3}).json()["tree_size"] == 13
    assert (
        client.get("/log/proof/inclusion", params={"index": 3, "size": 7}).json()["checkpoint"]
        == old_note
    )
    for first in range(14):
        body = client.get("/log/proof/consistency", params={"from": first, "to": 13}).json()
        proof = [b64(h) for h in body["consistency_path"]]
        if first == 7:
            check_consistency(old, new, proof)
    body = client.get("/log/proof/consistency", params={"from": 7}).json()
    assert body["second"] == 13
    check_consistency(old, new, [b64(h) for h in body["consistency_path"]])


BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("/log/proof/inclusion", {"index": 5}, 400, "log_index_out_of_range"),
    ("/log/proof/inclusion", {"index": 1, "size": 1}, 400, "log_index_out_of_range"),
    ("/log/proof/inclusion", {"index": 0, "size": 6}, 400, "log_size_out_of_range"),
    ("/log/proof/inclusion", {"index": 0, "size": 0}, 422, "validation_error"),
    ("/log/proof/inclusion", {"index": -1}, 422, "validation_error"),
    ("/log/proof/inclusion", {"index": 1 << 64}, 422, "validation_error"),
    ("/log/proof/inclusion", {"index": "x"}, 422, "validation_error"),
    ("/log/proof/consistency", {"from": 4, "to": 2}, 400, "log_range_invalid"),
    ("/log/proof/consistency", {"from": 1, "to": 9}, 400, "log_size_out_of_range"),
    ("/log/entries", {"start": 3, "end": 1}, 400, "log_range_invalid"),
    ("/log/entries", {"start": 0, "end": 1001}, 400, "log_range_invalid"),
    ("/log/entries", {"start": 0, "end": 6}, 400, "log_index_out_of_range"),
    ("/log/receipt/-1", {}, 401, "unauthenticated"),
]


def test_bad_indexes_and_sizes_are_typed_problems(
    app: FastAPI, client: TestClient, engine: Engine, make_account: MakeAccount
) -> None:
    append_events(engine, 5)
    ledger_of(app).integrate_now()
    for path, params, status, code in BAD_REQUESTS:
        assert_problem(client.get(path, params=params), status, code)
    admin = make_account("root", "admin")
    for index, status, code in (
        (-1, 422, "validation_error"),
        (1 << 64, 422, "validation_error"),
        (5, 404, "log_entry_not_found"),
    ):
        assert_problem(client.get(f"/log/receipt/{index}", headers=admin.headers), status, code)


def test_receipts_verify_offline(
    app: FastAPI, client: TestClient, engine: Engine, make_account: MakeAccount
) -> None:
    dev = make_account("dora")
    uid, _ = user_id_of(engine, "dora")
    indices = append_events(engine, 4, user_id=uid)
    # Not integrated yet: the receipt endpoint integrates on demand instead of failing.
    body = client.get(f"/log/receipt/{indices[2]}", headers=dev.headers).json()
    assert body["index"] == indices[2]
    verifier = verifier_of(client)
    verified = verify_receipt(body["entry"].encode(), body["receipt"], [verifier])
    assert verified.index == indices[2]
    assert verified.checkpoint.size == 4
    with pytest.raises(Exception, match="inclusion proof"):
        verify_receipt(
            body["entry"].replace("test/", "fake/").encode(), body["receipt"], [verifier]
        )


def test_visibility_of_entries_and_receipts(
    app: FastAPI, client: TestClient, engine: Engine, make_account: MakeAccount
) -> None:
    alice = make_account("alice")
    bob = make_account("bob")
    pub = make_account("pam", "publisher", org="acme")
    admin = make_account("root", "admin")
    a_id, _ = user_id_of(engine, "alice")
    b_id, _ = user_id_of(engine, "bob")
    _, acme = user_id_of(engine, "pam")
    a_idx = append_events(engine, 2, user_id=a_id, org_id=acme)
    b_idx = append_events(engine, 2, user_id=b_id)
    ledger_of(app).integrate_now()

    assert_problem(
        client.get(f"/log/receipt/{a_idx[0]}", headers=bob.headers), 403, "log_entry_forbidden"
    )
    assert_problem(client.get(f"/log/receipt/{a_idx[0]}"), 401, "unauthenticated")
    assert_problem(client.get("/log/receipt/99", headers=bob.headers), 404, "log_entry_not_found")
    assert client.get(f"/log/receipt/{b_idx[0]}", headers=bob.headers).status_code == 200
    assert client.get(f"/log/receipt/{a_idx[0]}", headers=pub.headers).status_code == 200
    assert_problem(
        client.get(f"/log/receipt/{b_idx[0]}", headers=pub.headers), 403, "log_entry_forbidden"
    )
    assert client.get(f"/log/receipt/{b_idx[0]}", headers=admin.headers).status_code == 200

    def readable(headers: dict[str, str]) -> set[int]:
        page = client.get("/log/entries", headers=headers).json()
        assert [e["index"] for e in page["entries"]] == [0, 1, 2, 3]
        return {e["index"] for e in page["entries"] if e["entry"] is not None}

    assert readable(bob.headers) == set(b_idx)
    assert readable(alice.headers) == set(a_idx)
    assert readable(pub.headers) == set(a_idx)
    assert readable(admin.headers) == {0, 1, 2, 3}
    assert readable({}) == set()
    # Leaf hashes are public either way, so anyone can recompute the root.
    page = client.get("/log/entries").json()
    root = root_from_leaf_hashes(b64(e["leaf_hash"]) for e in page["entries"])
    assert root == checkpoint_of(client)[1].root_hash


def test_log_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/log/checkpoint",
        "/log/vkey",
        "/log/entries",
        "/log/proof/inclusion",
        "/log/proof/consistency",
        "/log/receipt/{index}",
    ):
        assert path in paths
    assert "403" in paths["/log/receipt/{index}"]["get"]["responses"]
