"""Graceful shutdown: a download in flight when SIGTERM arrives still completes."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from gateway.db.engine import make_engine
from gateway.storage.local import LocalBlobStore
from tests.scale.conftest import make_account_in
from tests.scale.releases import register_release
from tests.scale.replicas import running_replicas

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_sigterm_lets_an_inflight_download_finish(
    data_dir: Path, sqlite_template: Path, tmp_path: Path
) -> None:
    database = tmp_path / "tiergate.db"
    shutil.copyfile(sqlite_template, database)
    url = f"sqlite:///{database}"
    engine = make_engine(url)
    try:
        publisher = make_account_in(engine)("pub", "publisher", org="acme")
        # Far larger than the loopback socket buffers, so the server is mid-body at SIGTERM.
        big = os.urandom(48 << 20)
        files = {"open": {"big.bin": big}, "optimized": {"small.bin": b"x"}}
        register_release(
            engine, publisher, files, repo_id="acme/big", blobs=LocalBlobStore(data_dir / "blobs")
        )
    finally:
        engine.dispose()
    with running_replicas(1, data_dir=data_dir, database_url=url) as replicas:
        (replica,) = replicas.members
        digest = hashlib.sha256()
        received = 0
        with (
            httpx.Client(base_url=replica.url, timeout=30) as client,
            client.stream("GET", "/acme/big/resolve/main/big.bin") as response,
        ):
            assert response.status_code == 200
            chunks = response.iter_bytes(1 << 16)
            first = next(chunks)
            digest.update(first)
            received += len(first)
            replica.process.send_signal(signal.SIGTERM)
            # New connections are refused once shutdown began; this one keeps streaming.
            for chunk in chunks:
                digest.update(chunk)
                received += len(chunk)
        assert received == len(big)
        assert digest.hexdigest() == hashlib.sha256(big).hexdigest()
        # uvicorn re-raises the captured SIGTERM once drained, so a clean exit reads -15.
        assert replica.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Traceback" not in replica.log_tail(200)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{replica.url}/healthz", timeout=2)
