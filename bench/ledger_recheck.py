"""Cost of the run-time re-check (issue 14 item 6) against the integration it guards.

Run: ``.venv/bin/python bench/ledger_recheck.py [ENTRIES] [BATCH] [BLOCK_BITS]`` (default
50,000, 500 and the runtime's 10, SQLite temp file). Builds the log with ``record_events`` +
integration, then times, for the same batches: one full integration (which now includes the
re-check of the tail and one round-robin block) and the re-check alone (`recheck_window`), and
prints the re-check's share.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session

from gateway.db.engine import make_engine, session_scope
from gateway.db.migrate import upgrade
from gateway.db.timeutil import utcnow
from gateway.ledger.events import Actor, Event, record_events
from gateway.ledger.integrate import read_state
from gateway.ledger.recheck import DEFAULT_BLOCK_BITS, recheck_window
from gateway.ledger.runtime import LedgerRuntime

ACTOR = Actor(kind="account", name="bench", user_id=1)


def _append(engine: object, count: int) -> None:
    events = [
        Event("generate", ACTOR, "acme/tiny", 1, {"call": i, "prompt": "sha256:" + "ab" * 32})
        for i in range(count)
    ]
    with session_scope(engine) as session:  # type: ignore[arg-type]
        record_events(session, events, now=utcnow())


def main() -> None:
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    bits = int(sys.argv[3]) if len(sys.argv) > 3 else DEFAULT_BLOCK_BITS
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        upgrade(engine)
        runtime = LedgerRuntime(
            engine, Ed25519PrivateKey.generate(), "http://bench", recheck_bits=bits
        )
        for _ in range(entries // batch):
            _append(engine, batch)
            runtime.integrate_now()
        integrate_ms: list[float] = []
        recheck_ms: list[float] = []
        for i in range(40):
            _append(engine, batch)
            start = time.perf_counter()
            runtime.integrate_now()
            integrate_ms.append((time.perf_counter() - start) * 1000)
            with Session(engine) as session:
                state = read_state(session)
                start = time.perf_counter()
                recheck_window(session, state.tree_size, state.root_hash, block=i, block_bits=bits)
                recheck_ms.append((time.perf_counter() - start) * 1000)
        full, alone = statistics.median(integrate_ms), statistics.median(recheck_ms)
        print(f"log of {entries:,} entries, batches of {batch}, SQLite")
        print(f"integration incl. re-check: median {full:.1f} ms")
        print(f"re-check alone (tail + one {1 << bits:,}-entry block): median {alone:.1f} ms")
        print(f"re-check share of an integration: {alone / full:.0%}")
        engine.dispose()


if __name__ == "__main__":
    main()
