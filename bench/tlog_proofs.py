"""Transparency-log benchmark: batched appends and proof serving for a large log.

Run: ``.venv/bin/python bench/tlog_proofs.py`` (defaults: 1,000,000 entries in memory, plus
200,000 entries through a stdlib SQLite file with the schema the gateway is expected to use).
Prints ratios against a raw ``hashlib.sha256`` baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from licensing.tlog.compact import CompactRange, append_batch
from licensing.tlog.merkle import (
    NodeStore,
    consistency_proof,
    inclusion_proof,
    inclusion_proof_node_ids,
    leaf_hash,
    root_node_ids,
    verify_inclusion,
)


def _entries(n: int) -> list[bytes]:
    # Roughly the size of a canonical-JSON call-log entry with two digests.
    pad = "ab" * 64
    return [
        (
            f'{{"action":"generate","actor":"user-{i % 9973:07d}","resource":"model/x","seq":{i},'
            f'"request_sha256":"{pad}","response_sha256":"{pad}"}}'
        ).encode()
        for i in range(n)
    ]


def _percentiles(samples_ns: Sequence[int]) -> tuple[float, float, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1e6
    p99 = ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)] / 1e6
    return p50, p99, ordered[-1] / 1e6


def _time_calls(fn: Callable[[int], object], args: Sequence[int]) -> list[int]:
    out = []
    for a in args:
        t0 = time.perf_counter_ns()
        fn(a)
        out.append(time.perf_counter_ns() - t0)
    return out


def bench_memory(n: int, batch: int, samples: int, rng: random.Random) -> None:
    entries = _entries(n)
    print(f"== in memory: {n:,} entries of ~{len(entries[0])} bytes, batches of {batch}")

    t0 = time.perf_counter()
    for e in entries:
        hashlib.sha256(e).digest()
    baseline = time.perf_counter() - t0

    t0 = time.perf_counter()
    hashes = [leaf_hash(e) for e in entries]
    t_leaf = time.perf_counter() - t0

    store = NodeStore()
    state = CompactRange.empty()
    t_append = t_store = 0.0
    node_count = 0
    for start in range(0, n, batch):
        t0 = time.perf_counter()
        result = append_batch(state, hashes[start : start + batch])
        t1 = time.perf_counter()
        store.put_many(result.nodes)
        t_store += time.perf_counter() - t1
        t_append += t1 - t0
        node_count += len(result.nodes)
        state = result.state
    root = state.root()

    per_leaf_us = (t_leaf + t_append) / n * 1e6
    print(f"baseline sha256(entry):         {baseline / n * 1e6:7.3f} us/entry")
    print(f"leaf_hash:                      {t_leaf / n * 1e6:7.3f} us/entry")
    print(f"append_batch (interior+emit):   {t_append / n * 1e6:7.3f} us/entry")
    print(
        f"leaf hash + append:             {per_leaf_us:7.3f} us/entry "
        f"= {(t_leaf + t_append) / baseline:4.2f}x baseline, "
        f"{n / (t_leaf + t_append):,.0f} appends/s"
    )
    print(f"NodeStore.put_many:             {t_store / n * 1e6:7.3f} us/entry")
    print(f"nodes persisted:                {node_count:,} ({node_count / n:.3f} per entry)")

    indices = [rng.randrange(n) for _ in range(samples)]
    incl = _time_calls(lambda i: inclusion_proof(i, n, store), indices)
    p50, p99, worst = _percentiles(incl)
    print(f"inclusion_proof, size {n:,}:   p50 {p50:.4f} ms  p99 {p99:.4f} ms  max {worst:.4f} ms")
    slow = sum(1 for t in incl if t > 5_000_000)
    print(f"inclusion proofs over 5 ms:     {slow} of {len(incl)}")

    proofs = {i: inclusion_proof(i, n, store) for i in indices[:1000]}
    ver = _time_calls(lambda i: verify_inclusion(hashes[i], i, n, proofs[i], root), list(proofs))
    p50, p99, worst = _percentiles(ver)
    print(f"verify_inclusion:               p50 {p50:.4f} ms  p99 {p99:.4f} ms  max {worst:.4f} ms")

    olds = [rng.randrange(1, n) for _ in range(samples)]
    cons = _time_calls(lambda m: consistency_proof(m, n, store), olds)
    p50, p99, worst = _percentiles(cons)
    print(f"consistency_proof(m, {n:,}):  p50 {p50:.4f} ms  p99 {p99:.4f} ms  max {worst:.4f} ms")


class _Rows:
    """A NodeReader over rows fetched in one query."""

    def __init__(self, rows: dict[tuple[int, int], bytes]) -> None:
        self.rows = rows

    def get(self, level: int, index: int) -> bytes:
        return self.rows[(level, index)]


def bench_sqlite(n: int, batch: int, samples: int, rng: random.Random) -> None:
    entries = _entries(n)
    print(f"== SQLite file (WAL, synchronous=NORMAL): {n:,} entries, batches of {batch}")
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(os.path.join(tmp, "log.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE entry (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        db.execute(
            "CREATE TABLE node (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,"
            " PRIMARY KEY (level, idx)) WITHOUT ROWID"
        )
        db.execute("CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 0), size INTEGER)")
        db.execute("INSERT INTO head VALUES (0, 0)")

        t0 = time.perf_counter()
        for start in range(0, n, batch):
            chunk = entries[start : start + batch]
            db.execute("BEGIN IMMEDIATE")
            # Reload the right edge each batch, as a replica would after another one appended.
            (size,) = db.execute("SELECT size FROM head").fetchone()
            edge = []
            for level, idx in root_node_ids(size):
                (h,) = db.execute(
                    "SELECT hash FROM node WHERE level = ? AND idx = ?", (level, idx)
                ).fetchone()
                edge.append(h)
            result = append_batch(CompactRange(size, tuple(edge)), [leaf_hash(e) for e in chunk])
            db.executemany(
                "INSERT INTO entry VALUES (?, ?)",
                zip(range(size, size + len(chunk)), chunk, strict=True),
            )
            db.executemany("INSERT INTO node VALUES (?, ?, ?)", result.nodes)
            db.execute("UPDATE head SET size = ?", (result.state.size,))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        print(f"appends (hash + integrate + insert + commit): {n / elapsed:,.0f} appends/s")

        def proof_from_sql(i: int) -> list[bytes]:
            ids = inclusion_proof_node_ids(i, n)
            clause = " OR ".join("(level = ? AND idx = ?)" for _ in ids)
            params = [v for pair in ids for v in pair]
            rows = db.execute(f"SELECT level, idx, hash FROM node WHERE {clause}", params)  # noqa: S608
            return inclusion_proof(i, n, _Rows({(lv, ix): h for lv, ix, h in rows}))

        indices = [rng.randrange(n) for _ in range(samples)]
        p50, p99, worst = _percentiles(_time_calls(proof_from_sql, indices))
        print(
            f"inclusion proof via one SELECT: p50 {p50:.4f} ms  p99 {p99:.4f} ms max {worst:.4f} ms"
        )
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--sqlite-size", type=int, default=200_000)
    parser.add_argument("--sqlite-batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    rng = random.Random(args.seed)
    bench_memory(args.size, args.batch, args.samples, rng)
    if args.sqlite_size:
        bench_sqlite(args.sqlite_size, args.sqlite_batch, min(args.samples, 2000), rng)


if __name__ == "__main__":
    main()
