"""Unique-constraint violations as outcomes, not outages.

Two replicas inserting the same unique value at once is a conflict between requests: one row
wins and the other request must learn that (409), never "database unreachable" (503).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.db.engine import begin_write

__all__ = ["insert_unique", "is_unique_violation"]

_PG_UNIQUE_VIOLATION = "23505"
_SQLITE_UNIQUE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def is_unique_violation(exc: IntegrityError) -> bool:
    """Whether the driver refused a duplicate key (not a foreign key or NOT NULL problem)."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if sqlstate is not None:
        return bool(sqlstate == _PG_UNIQUE_VIOLATION)
    name = getattr(orig, "sqlite_errorname", None)
    if name is not None:
        return name in _SQLITE_UNIQUE
    return "UNIQUE constraint failed" in str(orig)


def insert_unique(session: Session, *rows: Any) -> bool:
    """Insert ``rows`` under a savepoint; False when a unique constraint refused them.

    The savepoint keeps the caller's transaction usable after the refusal (PostgreSQL aborts
    the whole transaction otherwise), so the caller can read the row that won and decide.
    Other integrity errors propagate.
    """
    # SQLite: a SAVEPOINT outside a transaction would be one, committed by its RELEASE.
    begin_write(session)
    try:
        with session.begin_nested():
            session.add_all(rows)
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        return False
    return True
