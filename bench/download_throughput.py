"""Download benchmark: a full file through an expiring link vs. the same server with no checks.

Run: ``.venv/bin/python bench/download_throughput.py`` (default: a 1 GiB file, 5 rounds each,
SQLite, one uvicorn worker on 127.0.0.1, `curl` as the client when installed, else httpx).
Three routes of the same server process serve the same blob:

- ``link``: ``GET /dl/...?token=`` - signature, expiry, grant/release re-check, the atomic
  byte-budget UPDATE and a call-log append, then `gateway.streaming.BlobRangeResponse`;
- ``bare``: the same streaming response with no checks at all (the baseline);
- ``starlette``: Starlette's own ``FileResponse`` (a reference point).

Prints MiB/s per route (median of the rounds), the link/bare ratio (target >= 0.8) and the
server's peak RSS, which stays flat whatever the file size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_app(data_dir: Path) -> object:
    """The gateway app plus two bench-only routes serving blobs without any check."""
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response

    from gateway.app import create_app
    from gateway.config import Settings
    from gateway.streaming import BlobRangeResponse, ByteRange

    settings = Settings(data_dir=data_dir, log_level="warning", link_budget_factor=1000.0)
    app = create_app(settings)
    state = app.state.gateway

    async def bare(request: Request) -> Response:
        sha = request.path_params["sha"]
        size = state.blobs.size(sha)
        return BlobRangeResponse(
            blobs=state.blobs, sha256=sha, byte_range=ByteRange(0, size, size, False), headers={}
        )

    async def plain(request: Request) -> Response:
        return FileResponse(state.blobs.local_path(request.path_params["sha"]))

    app.add_route("/bench/bare/{sha}", bare)
    app.add_route("/bench/starlette/{sha}", plain)
    return app


def seed(data_dir: Path, size: int) -> tuple[str, str]:
    """A published release with one big open-tier file; returns (sha256, a read token)."""
    from sqlmodel import select

    from gateway.db.engine import make_engine, session_scope
    from gateway.db.migrate import upgrade
    from gateway.db.models import Org, Release, ReleaseFile, ReleaseTier, Role
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts
    from gateway.services.releases import record_blob
    from gateway.storage.local import LocalBlobStore

    source = data_dir / "big.bin"
    with source.open("wb") as handle:
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            handle.write(block)
    info = LocalBlobStore(data_dir / "blobs").put_file(source)
    source.unlink()
    engine = make_engine(f"sqlite:///{(data_dir / 'tiergate.db').resolve()}")
    upgrade(engine)
    now = utcnow()
    with session_scope(engine) as session:
        user = accounts.create_user(session, "bench", Role.publisher, "bench")
        token = accounts.issue_token(session, user, name="bench", now=now).plaintext
        org = session.exec(select(Org)).one()
        release = Release(
            org_id=org.id, name="big", version="1.0.0", repo_id="bench/big", status="published",
            statement_envelope="{}", statement_digest="0" * 64, signer_key_id="none",
            model_card="", policy_json="{}", created_by=user.id, created_at=now, published_at=now,
        )  # fmt: skip
        session.add(release)
        session.flush()
        session.add(ReleaseTier(release_id=release.id, tier="open", gated=False, bundle="{}",
                                manifest_digest="0" * 64))  # fmt: skip
        session.add(ReleaseFile(release_id=release.id, tier="open", path="big.bin",
                                sha256=info.sha256, size=info.size))  # fmt: skip
        record_blob(session, info.sha256, info.size, now)
    engine.dispose()
    return info.sha256, token


def fetch(url: str, size: int) -> float:
    """Seconds to download ``url`` whole (curl when installed: the client is no bottleneck)."""
    started = time.perf_counter()
    if shutil.which("curl"):
        done = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        received = int(float(done.stdout))
    else:
        import httpx

        received = 0
        with httpx.stream("GET", url, timeout=600) as response:
            for chunk in response.iter_raw(4 << 20):
                received += len(chunk)
    elapsed = time.perf_counter() - started
    if received != size:
        raise SystemExit(f"{url}: received {received} bytes, expected {size}")
    return elapsed


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve(data_dir: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(data_dir), host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.port)
        return 0

    import httpx

    size = args.size_mib << 20
    data_dir = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    try:
        sha, token = seed(data_dir, size)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(data_dir), "--port", str(args.port)]
        )
        base = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            link = httpx.post(
                f"{base}/api/links",
                json={"repo_id": "bench/big", "tier": "open", "path": "big.bin"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()["url"]
            urls = {
                "link": link,
                "bare": f"{base}/bench/bare/{sha}",
                "starlette": f"{base}/bench/starlette/{sha}",
            }
            times: dict[str, list[float]] = {name: [] for name in urls}
            fetch(urls["bare"], size)  # warm the page cache
            for _ in range(args.rounds):
                for name, url in urls.items():  # interleaved: drift hits every route alike
                    times[name].append(fetch(url, size))
            rss = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
        rate = {name: (size / (1 << 20)) / statistics.median(t) for name, t in times.items()}
        client = "curl" if shutil.which("curl") else "httpx"
        print(f"file {args.size_mib} MiB, {args.rounds} rounds, client {client}, loopback")
        for name, value in rate.items():
            print(f"  {name:<10} {value:8.0f} MiB/s  (median of {args.rounds})")
        print(f"  link / bare      = {rate['link'] / rate['bare']:.2f}  (target >= 0.80)")
        print(f"  link / starlette = {rate['link'] / rate['starlette']:.2f}")
        print(f"  server peak RSS  = {rss:.0f} MiB")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
