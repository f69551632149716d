"""Engine construction for SQLite (the embedded default) and PostgreSQL, and write transactions.

SQLite: Python's driver runs reads outside any transaction and opens one (deferred) at the
first INSERT/UPDATE/DELETE, so what a use case read before its first write may be stale by
then: two requests can both see a request pending and both decide it. Write transactions
therefore start with ``BEGIN IMMEDIATE``: they take the write lock first (waiting their turn,
never failing with SQLITE_BUSY_SNAPSHOT) and read fresh data under it. Reads stay outside,
concurrent (WAL). A SAVEPOINT outside a transaction begins one IMMEDIATE too, so every open
SQLite transaction holds the write lock: none reads on a snapshot a later write finds stale.
PostgreSQL needs none of this: its transitions are conditional updates and row locks under
READ COMMITTED.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

from gateway.errors import ConfigurationError

__all__ = ["WRITE", "begin_write", "make_engine", "session_scope", "write_engine"]

# Execution option: connections (and sessions) carrying it begin with BEGIN IMMEDIATE on SQLite.
WRITE = "tiergate_write"


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs to be safe under concurrency."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "savepoint", _sqlite_savepoint)
        return engine
    if url.startswith("postgresql"):
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            pool_timeout=10,
            connect_args={"connect_timeout": 5},
        )
    raise ConfigurationError(
        f"unsupported database URL scheme in {url.split(':', 1)[0]!r}; "
        "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Other transactions are left to the driver, which begins them at the first write.
    if connection.get_execution_options().get(WRITE):
        _begin_immediate(connection)


def _sqlite_savepoint(connection: Connection, _name: str | None) -> None:
    # Outside a transaction SQLite's SAVEPOINT would open a deferred one (reads on a snapshot
    # that a later write finds stale: SQLITE_BUSY_SNAPSHOT) whose RELEASE commits. A savepoint
    # is taken to write: begin the write transaction first.
    _begin_immediate(connection)


def _begin_immediate(connection: Connection) -> None:
    if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def write_engine(engine: Engine) -> Engine:
    """The same engine (and pool) whose transactions begin as write transactions."""
    return engine.execution_options(**{WRITE: True})


def begin_write(session: Session) -> None:
    """Make the rest of ``session``'s work one write transaction that reads fresh data.

    Call it at the start of a read-then-write use case. SQLite: unless the session has
    written already (then it holds the write lock), ``BEGIN IMMEDIATE`` now; the session's
    earlier reads were outside any transaction, so anything a decision depends on must be
    read (or checked by a conditional update) after this call. PostgreSQL: a no-op; its use
    cases lock rows or update conditionally.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    _begin_immediate(session.connection())


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session committed on success and rolled back on any error.

    ``write``: its transactions begin as write transactions (``BEGIN IMMEDIATE`` on SQLite);
    use it for work that reads and then writes.
    """
    options = {WRITE: True} if write else {}
    with Session(engine, expire_on_commit=False, execution_options=options) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
