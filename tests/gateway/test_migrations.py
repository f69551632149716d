"""Alembic migrations produce exactly the schema the SQLModel tables describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import gateway.db.models  # noqa: F401
from gateway.db.migrate import current_revision, head_revision, upgrade


def test_schema_matches_models(engine: Engine) -> None:
    upgrade(engine)  # idempotent on an up-to-date database
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
