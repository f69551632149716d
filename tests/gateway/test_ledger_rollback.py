"""Issue #14 item 6: rollbacks, run-time edits and malformed rows are refused before signing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.app import create_app
from gateway.config import Settings
from gateway.ledger.anchor import ANCHOR_FILE, CheckpointAnchor
from gateway.ledger.errors import LogTampered
from gateway.ledger.integrate import latest_checkpoint
from gateway.ledger.runtime import LedgerRuntime
from licensing.errors import TlogInconsistentError
from licensing.tlog.note import sign_note
from tests.gateway.test_health_and_errors import assert_problem
from tests.gateway.test_ledger import append_events, ledger_of

BASE_URL = "http://127.0.0.1:8000"
_LOG_TABLES = ("log_entries", "log_nodes", "log_checkpoints", "log_state")


def _checkpoint_sizes(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return [int(r[0]) for r in connection.execute(text("SELECT size FROM log_checkpoints"))]


class _Backup:
    """A database backup: the SQLite file itself, or the log tables' rows on PostgreSQL."""

    def __init__(self, engine: Engine, settings: Settings, where: Path) -> None:
        self.url = settings.resolved_database_url
        self.where = where
        self.rows: dict[str, list[dict[str, Any]]] = {}
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            engine.dispose()
            shutil.copyfile(self._db_file, where)
        else:
            meta = sa.MetaData()
            meta.reflect(engine, only=_LOG_TABLES)
            with engine.connect() as connection:
                for name in _LOG_TABLES:
                    rows = connection.execute(sa.select(meta.tables[name])).mappings()
                    self.rows[name] = [dict(r) for r in rows]

    @property
    def _db_file(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))

    def restore(self, engine: Engine) -> None:
        if engine.dialect.name == "sqlite":
            engine.dispose()  # the pool reconnects to the restored file
            for suffix in ("-wal", "-shm"):
                Path(f"{self._db_file}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(self.where, self._db_file)
            return
        meta = sa.MetaData()
        meta.reflect(engine, only=_LOG_TABLES)
        with engine.begin() as connection:
            for name in _LOG_TABLES:
                connection.execute(sa.delete(meta.tables[name]))
                connection.execute(sa.insert(meta.tables[name]), self.rows[name])


def test_restored_backup_fork_is_refused_before_signing(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    # The attack: back up, let the log grow, restore the backup (keys dir untouched).
    first = create_app(settings, engine=engine)
    append_events(engine, 5)
    ledger_of(first).integrate_now()
    backup = _Backup(engine, settings, tmp_path / "backup.db")
    grown = create_app(settings, engine=engine)
    append_events(engine, 5)
    assert ledger_of(grown).integrate_now() is not None
    assert (settings.resolved_keys_dir / ANCHOR_FILE).exists()
    backup.restore(engine)
    assert max(_checkpoint_sizes(engine)) == 5
    restarted = create_app(settings, engine=engine)
    with TestClient(restarted, raise_server_exceptions=False) as client:
        body = assert_problem(client.get("/readyz"), 503, "not_ready")
        assert "rollback" in body["checks"]["log"], body
        append_events(engine, 7)  # the restored log grows past the signed size...
        with pytest.raises(LogTampered):
            ledger_of(restarted).integrate_now()  # ...but no second size 10 is ever signed
        assert client.get("/log/checkpoint").text.splitlines()[1] == "5"
    assert max(_checkpoint_sizes(engine)) == 5


def test_runtime_edit_is_refused_before_signing(engine: Engine, settings: Settings) -> None:
    app = create_app(settings, engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        ledger = ledger_of(app)
        append_events(engine, 6)
        ledger.integrate_now()
        assert client.get("/readyz").status_code == 200
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE log_entries SET entry = replace(entry, 'test/2', 'test/Z') "
                    "WHERE idx = 2"
                )
            )
        append_events(engine, 2)
        with pytest.raises(LogTampered):
            ledger.integrate_now()
        body = assert_problem(client.get("/readyz"), 503, "not_ready")
        assert body["checks"]["log"].startswith("tampered: tlog_inconsistent: entry_edited")
    assert max(_checkpoint_sizes(engine)) == 6


def test_runtime_edit_of_an_old_block_is_found_while_idle(engine: Engine) -> None:
    # Blocks of 4 entries: 0-3 and 4-7 are re-checked round-robin, 8-9 (the tail) every time.
    runtime = LedgerRuntime(engine, Ed25519PrivateKey.generate(), BASE_URL, recheck_bits=2)
    append_events(engine, 10)
    runtime.integrate_now()
    for _ in range(4):
        runtime.recheck_now()
    with engine.begin() as connection:
        connection.execute(text("UPDATE log_entries SET entry = entry || ' ' WHERE idx = 5"))
    found = False
    for _ in range(2):  # one full round of the two blocks
        try:
            runtime.recheck_now()
        except LogTampered:
            found = True
            break
    assert found
    assert runtime.readiness().startswith("tampered: tlog_inconsistent: entry_edited")


def test_runtime_edit_with_forged_nodes_is_still_caught(engine: Engine) -> None:
    # Editing the entry and re-hashing its leaf and parents cannot reach the signed root.
    runtime = LedgerRuntime(engine, Ed25519PrivateKey.generate(), BASE_URL, recheck_bits=2)
    append_events(engine, 8)
    runtime.integrate_now()
    from licensing.tlog.merkle import leaf_hash, node_hash

    with engine.begin() as connection:
        rows = dict(connection.execute(text("SELECT idx, entry FROM log_entries")).all())
        rows[1] = rows[1].replace("test/1", "test/Q")
        leaves = [leaf_hash(rows[i].encode()) for i in range(4)]
        level1 = [node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3])]
        forged = {(0, 1): leaves[1], (1, 0): level1[0], (2, 0): node_hash(*level1)}
        connection.execute(text("UPDATE log_entries SET entry = :e WHERE idx = 1"), {"e": rows[1]})
        for (level, index), value in forged.items():
            connection.execute(
                text('UPDATE log_nodes SET hash = :h WHERE level = :l AND "index" = :i'),
                {"h": value.hex(), "l": level, "i": index},
            )
    with pytest.raises(LogTampered):
        runtime.recheck_now()  # either block: forged (2, 0) is also on block 1's audit path
    assert runtime.readiness().startswith("tampered: tlog_inconsistent: node_mismatch")


@pytest.mark.parametrize("value", ["X'00'", "X'" + "00" * 32 + "'", "''", "'zz'"])
def test_malformed_node_hash_reports_tampered_not_pending(
    engine: Engine, settings: Settings, value: str
) -> None:
    if engine.dialect.name != "sqlite" and value.startswith("X"):
        pytest.skip("PostgreSQL refuses a blob in a text column")
    first = create_app(settings, engine=engine)
    append_events(engine, 10)
    ledger_of(first).integrate_now()
    with engine.begin() as connection:
        connection.execute(
            text(f'UPDATE log_nodes SET hash = {value} WHERE level = 0 AND "index" = 2')
        )
    restarted = create_app(settings, engine=engine)
    with TestClient(restarted, raise_server_exceptions=False) as client:
        body = assert_problem(client.get("/readyz"), 503, "not_ready")
        assert body["checks"]["log"].startswith("tampered: "), body
        with pytest.raises(LogTampered):
            ledger_of(restarted).integrate_now()


def test_anchor_only_moves_forward_and_refuses_a_forgery(engine: Engine, tmp_path: Path) -> None:
    anchor = CheckpointAnchor(tmp_path / "keys" / ANCHOR_FILE)
    runtime = LedgerRuntime(engine, Ed25519PrivateKey.generate(), BASE_URL, anchor=anchor)
    append_events(engine, 3)
    runtime.integrate_now()
    key = runtime.key()
    with Session(engine) as session:
        small = latest_checkpoint(session)
    assert small is not None
    assert small.size == 3
    append_events(engine, 2)
    runtime.integrate_now()
    anchor.save(small.note, key.verifier, key.origin)  # a late writer with an older note
    loaded = anchor.load(key.verifier, key.origin)
    assert loaded is not None
    assert loaded.size == 5
    assert (anchor.path.stat().st_mode & 0o777) == 0o600
    # A note signed by another key is not an anchor: refused, not ignored.
    other = LedgerRuntime(engine, Ed25519PrivateKey.generate(), BASE_URL).key()
    anchor.path.write_text(sign_note(f"{key.origin}\n9\n{'A' * 43}=\n", [other.signer]))
    with pytest.raises(TlogInconsistentError):
        anchor.load(key.verifier, key.origin)
    assert runtime.self_check() is not None
    assert runtime.readiness().startswith("tampered: ")


def test_first_start_writes_the_anchor_after_the_self_check(engine: Engine, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    LedgerRuntime(engine, key, BASE_URL).integrate_now()
    append_events(engine, 4)
    LedgerRuntime(engine, key, BASE_URL).integrate_now()
    anchor = CheckpointAnchor(tmp_path / ANCHOR_FILE)
    runtime = LedgerRuntime(engine, key, BASE_URL, anchor=anchor)
    assert runtime.self_check() is None
    loaded = anchor.load(runtime.key().verifier, runtime.key().origin)
    assert loaded is not None
    assert loaded.size == 4


def test_anchor_file_setting_moves_the_anchor_off_the_keys_dir(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    where = tmp_path / "persistent" / "anchor.note"
    app = create_app(settings.model_copy(update={"log_anchor_file": where}), engine=engine)
    append_events(engine, 2)
    ledger_of(app).integrate_now()
    assert where.exists()
    assert not (settings.resolved_keys_dir / ANCHOR_FILE).exists()
