"""Bounded load against 1 and 2 gateway replicas on loopback: throughput, p50/p99, scaling ratio.

    python bench/load.py [--requests 3000] [--concurrency 32] [--time-cap 60] [--write]

Needs PostgreSQL at 127.0.0.1:5432 (TIERGATE_TEST_PG_URL overrides), like the test suite.
Each run gets a fresh database; replicas are real `tiergate serve` processes sharing it, and
the load generator (httpx async, one process) spreads requests over them round robin, as a
load balancer would. The mix: API reads (release list, log checkpoint), log appends (register
then revoke a public key: two logged writes), and link range reads (link check, budget spend
and 4 KiB of a gated file). `--write` records the result in docs/_bench_scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "TIERGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FILE_SIZE = 4 << 20
RANGE = 4096


@dataclass
class Result:
    replicas: int
    wall: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def throughput(self) -> float:
        return self.count / self.wall

    def percentile(self, kind: str | None, q: float) -> float:
        values = (
            sorted(v for vs in self.latencies.values() for v in vs)
            if kind is None
            else sorted(self.latencies[kind])
        )
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))] * 1000


def create_database() -> tuple[str, str]:
    name = f"tiergate_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def prepare(url: str, data_dir: Path) -> tuple[str, str]:
    """Migrate, create a publisher and a developer, publish a gated release, grant access."""
    from gateway.db.engine import make_engine
    from gateway.db.migrate import upgrade
    from gateway.storage.local import LocalBlobStore
    from tests.gateway.download_fixtures import grant_access
    from tests.scale.conftest import make_account_in
    from tests.scale.releases import register_release

    engine = make_engine(url)
    upgrade(engine)
    make = make_account_in(engine)
    publisher = make("pub", "publisher", org="acme")
    dev = make("dev")
    files = {
        "open": {"config.json": b"{}"},
        "optimized": {"model.safetensors": os.urandom(FILE_SIZE)},
    }
    register_release(
        engine, publisher, files, repo_id="acme/bench", blobs=LocalBlobStore(data_dir / "blobs")
    )
    grant_access(engine, "dev", "acme/bench", "1.0.0")
    engine.dispose()
    return publisher.token, dev.token


async def run_load(
    urls: list[str], dev_token: str, *, requests: int, concurrency: int, time_cap: float
) -> Result:
    from licensing.keys import PrivateKey

    headers = {"Authorization": f"Bearer {dev_token}"}
    result = Result(replicas=len(urls), wall=0.0)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # One link per worker: each range read spends 4 KiB of its 3 x 4 MiB budget.
        links: list[str] = []
        for i in range(concurrency):
            issued = await client.post(
                f"{urls[i % len(urls)]}/api/links",
                json={"repo_id": "acme/bench", "tier": "optimized", "path": "model.safetensors"},
                headers=headers,
            )
            issued.raise_for_status()
            links.append("/" + issued.json()["url"].split("://", 1)[1].split("/", 1)[1])
        counter = iter(range(requests))
        deadline = time.monotonic() + time_cap

        async def one(i: int, worker: int) -> None:
            base = urls[i % len(urls)]
            kind = ("read", "read", "read", "append", "link")[i % 5]
            started = time.perf_counter()
            if kind == "read":
                path = "/api/releases" if i % 2 else "/log/checkpoint"
                ok = (await client.get(base + path, headers=headers)).status_code == 200
            elif kind == "append":
                pem = PrivateKey.generate("ed25519").public_key.to_pem().decode()
                made = await client.post(f"{base}/api/keys", json={"pem": pem}, headers=headers)
                ok = made.status_code == 201
                if ok:
                    key_id = made.json()["key_id"]
                    other = urls[(i + 1) % len(urls)]  # revoke through another replica
                    gone = await client.delete(f"{other}/api/keys/{key_id}", headers=headers)
                    ok = gone.status_code == 200
            else:
                start = (i * RANGE) % (FILE_SIZE - RANGE)
                got = await client.get(
                    base + links[worker], headers={"Range": f"bytes={start}-{start + RANGE - 1}"}
                )
                ok = got.status_code == 206 and len(got.content) == RANGE
            if ok:
                result.latencies[kind].append(time.perf_counter() - started)
            else:
                result.errors[kind] += 1

        async def worker(number: int) -> None:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                await one(i, number)

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        result.wall = time.perf_counter() - began
    return result


def measure(replica_count: int, args: argparse.Namespace) -> Result:
    from tests.scale.replicas import running_replicas

    name, url = create_database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "shared"
            data_dir.mkdir()
            _, dev_token = prepare(url, data_dir)
            with running_replicas(replica_count, data_dir=data_dir, database_url=url) as rs:
                for u in rs.urls:  # warm up: first requests pay for imports and pools
                    for _ in range(20):
                        httpx.get(f"{u}/api/releases", timeout=30)
                return asyncio.run(
                    run_load(
                        rs.urls,
                        dev_token,
                        requests=args.requests,
                        concurrency=args.concurrency,
                        time_cap=args.time_cap,
                    )
                )
    finally:
        drop_database(name)


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        "| replicas | requests | errors | wall s | req/s | p50 ms | p99 ms | "
        "read p50/p99 | append p50/p99 | link p50/p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        cells = [
            f"{r.percentile(k, 0.5):.1f}/{r.percentile(k, 0.99):.1f}"
            for k in ("read", "append", "link")
        ]
        lines.append(
            f"| {r.replicas} | {r.count} | {sum(r.errors.values())} | {r.wall:.1f} | "
            f"{r.throughput:.0f} | {r.percentile(None, 0.5):.1f} | "
            f"{r.percentile(None, 0.99):.1f} | " + " | ".join(cells) + " |"
        )
    ratio = results[-1].throughput / results[0].throughput
    lines.append("")
    for r in results:
        if r.errors:
            detail = ", ".join(f"{kind}: {n}" for kind, n in sorted(r.errors.items()))
            lines.append(f"Failed operations with {r.replicas} replica(s): {detail}.")
    lines.append("")
    lines.append(f"Scaling ratio (2 replicas / 1 replica throughput): **{ratio:.2f}x**")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--time-cap", type=float, default=60.0)
    parser.add_argument("--write", action="store_true", help="record in docs/_bench_scale.md")
    args = parser.parse_args()
    results = [measure(n, args) for n in (1, 2)]
    table = report(results, args)
    cores = os.cpu_count() or 0
    print(table)
    print(f"\n{cores} CPU cores; load generator, replicas and PostgreSQL share them.")
    if args.write:
        command = (
            f"python bench/load.py --requests {args.requests} "
            f"--concurrency {args.concurrency} --time-cap {args.time_cap:g} --write"
        )
        text = (
            "# Scale-out load benchmark\n\n"
            f"Command: `{command}`\n\n"
            f"Machine: {cores} CPU cores, {platform.python_implementation()} "
            f"{platform.python_version()}, PostgreSQL on 127.0.0.1; one load-generator process "
            "(httpx async) spreading requests round robin over the replicas.\n\n"
            "Mix per 5 requests: 3 API reads (`GET /api/releases`, `GET /log/checkpoint`), "
            "1 log append pair (register a key, revoke it through another replica: two "
            "logged writes), 1 link range read (link verification, budget spend, 4 KiB "
            "`Range` of a gated 4 MiB file). Latencies are per operation, successful ones "
            "only.\n\n" + table + "\n\n"
        )
        (ROOT / "docs" / "_bench_scale.md").write_text(text + NOTE_PLACEHOLDER)


NOTE_PLACEHOLDER = "<!-- interpretation below is written by hand after each run -->\n"


if __name__ == "__main__":
    main()
