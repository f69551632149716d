"""Ledger benchmark: appends/s through `record_event(s)` + integration, and proof latency.

Run: ``.venv/bin/python bench/ledger_appends.py`` (SQLite always; PostgreSQL when reachable at
$TIERGATE_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test, in a
throwaway database). Prints ratios against a raw `executemany` insert of the same rows
measured in the same run. ``--proof-entries`` sizes the large log (default 1,000,000).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.db.engine import make_engine, session_scope
from gateway.db.migrate import upgrade
from gateway.db.timeutil import utcnow
from gateway.ledger.events import Actor, Event, _entry_row, record_event, record_events
from gateway.ledger.runtime import LedgerRuntime

BASE_URL = "http://127.0.0.1:8000"
ACTOR = Actor(kind="account", name="bench", user_id=1)


def _event(i: int) -> Event:
    # Roughly a generation call's entry: two digests and the watermark parameters.
    return Event(
        action="generate",
        actor=ACTOR,
        resource="acme/tiny-llama",
        org_id=1,
        fields={
            "call": i,
            "prompt": "sha256:" + "ab" * 32,
            "output": "sha256:" + "cd" * 32,
            "watermark": {"scheme": "kgw-1", "key_id": "k1", "gamma": "0.25", "delta": "2.0"},
        },
    )


def _append(engine: sa.Engine, runtime: LedgerRuntime, count: int, batch: int, bulk: bool) -> None:
    done = 0
    while done < count:
        n = min(batch, count - done)
        with session_scope(engine) as session:
            now = utcnow()
            if bulk:
                record_events(session, [_event(done + i) for i in range(n)], now=now)
            else:
                for i in range(n):
                    e = _event(done + i)
                    record_event(
                        session,
                        action=e.action,
                        actor=e.actor,
                        resource=e.resource,
                        now=now,
                        org_id=e.org_id,
                        fields=e.fields,
                    )
        done += n
        runtime.integrate_now()


def _writer(
    url: str, seed: bytes, count: int, batch: int, bulk: bool, start: object, cpu: object
) -> None:
    engine = make_engine(url)
    runtime = LedgerRuntime(engine, Ed25519PrivateKey.from_private_bytes(seed), BASE_URL)
    start.wait()  # type: ignore[attr-defined]
    t0 = time.process_time()
    _append(engine, runtime, count, batch, bulk)
    cpu.put(time.process_time() - t0)  # type: ignore[attr-defined]
    engine.dispose()


def bench_writers(
    url: str, seed: bytes, writers: int, count: int, batch: int, bulk: bool
) -> tuple[float, float]:
    """Appends/s of ``writers`` concurrent processes (integration included), and appends per
    CPU-second spent in the writer processes (less sensitive to a busy machine)."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(writers + 1)
    cpu = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, seed, count // writers, batch, bulk, start, cpu))
        for _ in range(writers)
    ]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"writer failed with exit code {p.exitcode}")
    wall = time.perf_counter() - t0
    cpu_s = sum(cpu.get() for _ in procs)
    return count / wall, count / cpu_s


def bench_raw_insert(url: str, count: int, batch: int) -> float:
    """Baseline: the same entry rows inserted with executemany, no index, no Merkle, no note."""
    engine = make_engine(url)
    rows = [_entry_row(10_000_000 + i, _event(i), utcnow()) for i in range(count)]
    table = sa.table("log_entries", *(sa.column(c) for c in rows[0]))
    t0 = time.perf_counter()
    for s in range(0, count, batch):
        with engine.begin() as connection:
            connection.execute(sa.insert(table), rows[s : s + batch])
    rate = count / (time.perf_counter() - t0)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM log_entries WHERE idx >= 10000000"))
    engine.dispose()
    return rate


def fresh_db(kind: str, pg_admin: str | None, workdir: Path) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'ledger-{secrets.token_hex(3)}.db'}"
    else:
        assert pg_admin is not None
        name = f"tiergate_bench_{os.getpid()}_{secrets.token_hex(3)}"
        admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = pg_admin.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop_pg(pg_admin: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def pg_reachable(url: str) -> bool:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def main() -> None:
    from bench.ledger_bigtree import bench_proofs

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=500, help="appends per transaction")
    parser.add_argument("--proof-entries", type=int, default=1_000_000)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    pg_admin = os.environ.get(
        "TIERGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    kinds = ["sqlite"] + ([] if args.skip_pg or not pg_reachable(pg_admin) else ["postgres"])
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            url = fresh_db(kind, pg_admin, Path(tmp))
            try:
                base = bench_raw_insert(url, args.appends // 2, args.batch)
                print(f"[{kind}] baseline raw executemany insert: {base:,.0f} rows/s")
                for writers in (1, 2):
                    for bulk in (False, True):
                        how = (
                            "record_events (1 reservation + 1 insert per txn)"
                            if bulk
                            else ("record_event per event")
                        )
                        n = args.appends if bulk else args.appends // 4
                        rate, per_cpu = bench_writers(url, seed, writers, n, args.batch, bulk)
                        print(
                            f"[{kind}] {writers} writer process(es), {how}, {args.batch}/txn, "
                            f"integrated + signed per txn: {rate:,.0f} appends/s "
                            f"({rate / base:.2f}x raw insert; {per_cpu:,.0f} per writer CPU-s)"
                        )
            finally:
                if kind == "postgres":
                    drop_pg(pg_admin, url)
            if args.proof_entries:
                url = fresh_db(kind, pg_admin, Path(tmp))
                try:
                    bench_proofs(url, kind, seed, args.proof_entries)
                finally:
                    if kind == "postgres":
                        drop_pg(pg_admin, url)


if __name__ == "__main__":
    main()
