"""Build a large log straight into the database (bulk inserts), then time proofs and self-check.

Used by ``bench/ledger_appends.py``; runnable alone:
``.venv/bin/python bench/ledger_bigtree.py sqlite:///tmp/big.db 1000000`` (a migrated, empty DB).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session

from gateway.db.engine import make_engine
from gateway.ledger.integrate import LogKey, origin_from_base_url
from gateway.ledger.reads import inclusion
from gateway.ledger.runtime import LedgerRuntime
from licensing.tlog.checkpoint import Checkpoint, sign_checkpoint
from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import leaf_hash, verify_inclusion

BASE_URL = "http://127.0.0.1:8000"
_CHUNK = 50_000
_CREATED = "2026-01-01 00:00:00.000000"


def _entry(i: int) -> str:
    # Canonical JSON of the shape record_event writes (sorted keys, no spaces).
    return (
        '{"action":"generate","actor":{"kind":"account","name":"bench"},"fields":{"call":'
        f'{i},"output":"sha256:{"cd" * 32}","prompt":"sha256:{"ab" * 32}"}},"index":{i},'
        f'"resource":"acme/tiny-llama","time":"2026-01-01T00:00:00.{i % 1000000:06d}Z","v":1}}'
    )


def _chunks(
    n: int, final: list[CompactRange]
) -> Iterator[tuple[list[tuple[object, ...]], list[tuple[int, int, str]]]]:
    state = CompactRange.empty()
    for start in range(0, n, _CHUNK):
        entries = [_entry(i) for i in range(start, min(n, start + _CHUNK))]
        result = append_batch(state, [leaf_hash(e.encode()) for e in entries])
        state = result.state
        rows: list[tuple[object, ...]] = [
            (start + k, e, "generate", 1, 1, _CREATED) for k, e in enumerate(entries)
        ]
        final[:] = [state]
        yield rows, [(lv, ix, h.hex()) for lv, ix, h in result.nodes]
    final[:] = [state]


def build(url: str, seed: bytes, n: int) -> float:
    """Fill an empty migrated database with ``n`` integrated entries and one checkpoint."""
    engine = make_engine(url)
    t0 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        postgres = url.startswith("postgresql")
        final: list[CompactRange] = []
        for rows, nodes in _chunks(n, final):
            if postgres:
                with cursor.copy(  # type: ignore[attr-defined]
                    "COPY log_entries (idx, entry, action, actor_user_id, org_id, created_at) "
                    "FROM STDIN"
                ) as copy:
                    for row in rows:
                        copy.write_row(row)
                with cursor.copy('COPY log_nodes (level, "index", hash) FROM STDIN') as copy:  # type: ignore[attr-defined]
                    for node in nodes:
                        copy.write_row(node)
            else:
                cursor.executemany(
                    "INSERT INTO log_entries (idx, entry, action, actor_user_id, org_id, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                cursor.executemany(
                    'INSERT INTO log_nodes (level, "index", hash) VALUES (?, ?, ?)', nodes
                )
        state = final[0]
        key = LogKey.from_private_key(
            Ed25519PrivateKey.from_private_bytes(seed), origin_from_base_url(BASE_URL)
        )
        note = sign_checkpoint(Checkpoint(key.origin, n, state.root()), key.signer, previous=None)
        update_state = "UPDATE log_state SET next_index = ?, tree_size = ?, root_hash = ?, "
        update_state += "right_edge = ? WHERE id = 1"
        insert_checkpoint = "INSERT INTO log_checkpoints (size, root_hash, note, created_at) "
        insert_checkpoint += "VALUES (?, ?, ?, ?)"
        if postgres:  # psycopg's placeholders
            update_state = update_state.replace("?", "%s")
            insert_checkpoint = insert_checkpoint.replace("?", "%s")
        cursor.execute(
            update_state,
            (n, n, state.root().hex(), json.dumps([h.hex() for h in state.right_edge])),
        )
        cursor.execute(
            insert_checkpoint,
            (n, state.root().hex(), note, _CREATED),
        )
        raw.commit()
        if postgres:
            cursor.execute("ANALYZE log_nodes")
            cursor.execute("ANALYZE log_entries")
            raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return time.perf_counter() - t0


def bench_proofs(url: str, kind: str, seed: bytes, n: int, samples: int = 2000) -> None:
    build_s = build(url, seed, n)
    print(f"[{kind}] built a {n:,}-entry log with bulk inserts in {build_s:.1f} s")
    engine = make_engine(url)
    runtime = LedgerRuntime(engine, Ed25519PrivateKey.from_private_bytes(seed), BASE_URL)
    rng = random.Random(7)
    latencies = []
    with Session(engine) as session:
        for _ in range(samples):
            index = rng.randrange(n)
            t0 = time.perf_counter()
            proof = inclusion(session, index, None)
            latencies.append(time.perf_counter() - t0)
            verify_inclusion(
                leaf_hash(_entry(index).encode()), index, n, proof.proof, proof.root_hash
            )
    latencies.sort()
    median = statistics.median(latencies) * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    print(
        f"[{kind}] inclusion proof from the DB (1 SELECT of nodes + checkpoint lookups), "
        f"{samples} random leaves of {n:,}: median {median:.2f} ms, p99 {p99:.2f} ms"
    )
    t0 = time.perf_counter()
    problem = runtime.self_check()
    print(
        f"[{kind}] full start-up self-check of {n:,} entries: {time.perf_counter() - t0:.1f} s"
        f" ({'ok' if problem is None else problem})"
    )
    runtime.selfcheck_max_entries = 100_000
    runtime.status.checked = False
    t0 = time.perf_counter()
    problem = runtime.self_check()
    print(
        f"[{kind}] bounded self-check (newest 100,000): {time.perf_counter() - t0:.1f} s"
        f" ({'ok' if problem is None else problem})"
    )
    engine.dispose()


if __name__ == "__main__":
    from gateway.db.migrate import upgrade

    target = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        if target is None:
            target = f"sqlite:///{tmp}/big.db"
        eng = make_engine(target)
        upgrade(eng)
        eng.dispose()
        bench_proofs(
            target, target.split(":")[0], Ed25519PrivateKey.generate().private_bytes_raw(), count
        )
