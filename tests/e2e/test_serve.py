"""`tiergate serve` as a newcomer runs it: a real process, first start, restart, logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e
TOKEN_RE = re.compile(r"tg_[A-Za-z0-9_-]{43}")


@contextmanager
def serve(data_dir: Path, database_url: str, *extra: str) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log_path = data_dir.parent / f"serve-{port}.log"
    env = {**os.environ, "TIERGATE_DATA_DIR": str(data_dir), "TIERGATE_DATABASE_URL": database_url}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(port), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            yield url, log_path
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_first_start_restart_keeps_users_tokens_and_keys(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    with serve(data_dir, database_url) as (url, log_path):
        output = log_path.read_text()
        assert f"serving at {url}" in output
        tokens = TOKEN_RE.findall(output)
        assert len(tokens) == 1, output
        headers = {"Authorization": f"Bearer {tokens[0]}"}
        me = httpx.get(f"{url}/api/whoami", headers=headers)
        assert me.status_code == 200
        assert me.json()["role"] == "admin"
        created = httpx.post(
            f"{url}/api/admin/users", json={"username": "dev", "role": "developer"}, headers=headers
        )
        assert created.status_code == 201
        dev_token = created.json()["token"]
    keys_before = {p.name: p.read_bytes() for p in (data_dir / "keys").iterdir()}

    with serve(data_dir, database_url) as (url, log_path):
        assert not TOKEN_RE.findall(log_path.read_text()), "bootstrap ran twice"
        for token, name in ((tokens[0], "admin"), (dev_token, "dev")):
            me = httpx.get(f"{url}/api/whoami", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
            assert me.json()["username"] == name
    assert {p.name: p.read_bytes() for p in (data_dir / "keys").iterdir()} == keys_before


def test_json_logs_never_contain_tokens(tmp_path: Path, database_url: str) -> None:
    with serve(tmp_path / "data", database_url, "--log-format", "json") as (url, log_path):
        token = TOKEN_RE.findall(log_path.read_text())[0]
        httpx.get(f"{url}/api/whoami", headers={"Authorization": f"Bearer {token}"})
        httpx.get(f"{url}/api/whoami?token={token}")
        httpx.get(f"{url}/api/{token}")
        time.sleep(0.3)
    lines = log_path.read_text().splitlines()
    json_lines = [line for line in lines if line.startswith("{")]
    assert any('"tiergate.access"' in line for line in json_lines)
    # The bootstrap banner prints the token once on stdout by design; no log record may.
    assert not any(token in line for line in json_lines)
