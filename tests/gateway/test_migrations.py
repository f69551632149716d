"""Alembic migrations produce exactly the schema the SQLModel tables describe."""

from __future__ import annotations

import json
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import gateway.db.models  # noqa: F401
from gateway.db.engine import make_engine
from gateway.db.migrate import current_revision, head_revision, upgrade
from gateway.db.timeutil import utcnow


def test_schema_matches_models(engine: Engine) -> None:
    upgrade(engine)  # idempotent on an up-to-date database
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_choice_digests_are_backfilled_from_the_log(tmp_path: Path) -> None:
    """0016 fills ``generation_calls.text_sha256`` from each entry's ``outputs[].sha256``."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0015_flaw_reports")
    outputs = [{"index": 0, "sha256": "sha256:" + "a" * 64}, {"index": 1, "sha256": "sha256:b"}]
    entry = {"fields": {"call_id": "cmpl-old", "outputs": outputs}}
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # no users or releases here
        for idx, action, body in [
            (0, "release.published", {"fields": {"outputs": [{"sha256": "sha256:x"}]}}),
            (1, "generation.completed", entry),
        ]:
            connection.execute(
                text(
                    "INSERT INTO log_entries (idx, entry, action, created_at) "
                    "VALUES (:idx, :entry, :action, :now)"
                ),
                {"idx": idx, "entry": json.dumps(body), "action": action, "now": utcnow()},
            )
        for log_index, choice in [(1, 0), (1, 1), (1, 2), (0, 0)]:
            connection.execute(
                text(
                    "INSERT INTO generation_calls (call_id, choice_index, key_id, payload, "
                    "log_index, user_id, release_id, tier, created_at) VALUES "
                    "(:call, :choice, 'k', 1, :log_index, 1, 1, 'open', :now)"
                ),
                {
                    "call": f"c{log_index}",
                    "choice": choice,
                    "log_index": log_index,
                    "now": utcnow(),
                },
            )
        connection.commit()
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT log_index, choice_index, text_sha256 FROM generation_calls "
                "ORDER BY log_index, choice_index"
            )
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        (0, 0, None),  # not a generation entry
        (1, 0, "sha256:" + "a" * 64),
        (1, 1, "sha256:b"),
        (1, 2, None),  # no such output logged
    ]
