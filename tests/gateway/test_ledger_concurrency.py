"""Several gateway processes appending and integrating on one database: no gaps, no forks."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
PER_WRITER = 150


def writer(url: str, key_file: str, count: int, tag: str) -> None:
    """One gateway-like process: appends in small transactions, integrating as it goes."""
    # Imports here keep the writer processes' start-up short (no FastAPI, no app).
    from gateway.db.engine import make_engine, session_scope
    from gateway.db.timeutil import utcnow
    from gateway.ledger.events import Actor, record_event
    from gateway.ledger.runtime import LedgerRuntime

    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    engine = make_engine(url)
    runtime = LedgerRuntime(engine, key, "http://127.0.0.1:8000", batch=32)
    done = 0
    while done < count:
        with session_scope(engine) as session:
            for _ in range(min(25, count - done)):
                record_event(
                    session,
                    action="test.event",
                    actor=Actor(kind="account", name=tag),
                    resource=f"{tag}/{done}",
                    now=utcnow(),
                )
                done += 1
        runtime.integrate_now()
    runtime.integrate_now()
    engine.dispose()
    print(f"{tag} done")


def test_two_writer_processes_make_one_consistent_log(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import func, select
    from sqlmodel import Session

    from gateway.db.models import LogCheckpoint, LogEntry, LogNode
    from gateway.ledger.reads import consistency
    from gateway.ledger.runtime import LedgerRuntime
    from licensing.tlog.audit import check_consistency
    from licensing.tlog.checkpoint import open_checkpoint

    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "log.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code = (
        "import sys; from tests.gateway.test_ledger_concurrency import writer; "
        "writer(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, database_url, str(key_file), str(PER_WRITER), tag],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out

    total = 2 * PER_WRITER
    with Session(engine) as session:
        indices = session.execute(select(LogEntry.idx).order_by(LogEntry.idx)).scalars().all()  # type: ignore[call-overload, arg-type]
        assert list(indices) == list(range(total))  # no gaps, no duplicates
        nodes = session.execute(select(func.count()).select_from(LogNode)).scalar_one()
        assert nodes == 2 * total - total.bit_count()  # each perfect subtree stored once
        rows = session.execute(select(LogCheckpoint).order_by(LogCheckpoint.size)).scalars().all()  # type: ignore[arg-type]
        runtime = LedgerRuntime(engine, key, "http://127.0.0.1:8000")
        verifier = runtime.key(session).verifier
        checkpoints = [open_checkpoint(row.note, [verifier]) for row in rows]
        assert checkpoints[-1].size == total
        # No fork: every signed checkpoint extends the one before it.
        for old, new in itertools.pairwise(checkpoints):
            _, proof = consistency(session, old.size, new.size)
            check_consistency(old, new, proof)
    assert runtime.self_check() is None
