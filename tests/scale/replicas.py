"""Several real gateway processes (`python -m gateway.cli.main serve`) on one database.

Like a deployment behind a load balancer: every replica shares the PostgreSQL database, the
keys directory (the Secret of the Kubernetes manifests) and the blob store, and holds
nothing else in common. `Replicas` starts them, waits for /readyz, and stops them with
SIGTERM (graceful shutdown), killing only what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port

READY_TIMEOUT = 60.0


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (uvicorn drains in-flight requests), then SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


@dataclass
class Replicas:
    data_dir: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    members: list[Replica] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.members]

    def start(self, count: int) -> None:
        # Keys are made once, before any replica starts: replicas must share them, never race
        # to generate their own.
        from gateway.keyring import load_keyring

        load_keyring(self.data_dir / "keys")
        started = [self._spawn(len(self.members) + i) for i in range(count)]
        self.members.extend(started)
        for position, replica in enumerate(started):
            try:
                self._wait_ready(replica)
            except RuntimeError:
                # A port picked free can be taken before the replica binds it: retry once.
                if "address already in use" not in replica.log_tail().lower():
                    raise
                retry = self._spawn(len(self.members))
                self.members[self.members.index(replica)] = started[position] = retry
                self._wait_ready(retry)

    def _spawn(self, number: int) -> Replica:
        port = free_port()
        env = {
            **os.environ,
            "TIERGATE_DATABASE_URL": self.database_url,
            "TIERGATE_DATA_DIR": str(self.data_dir),
            "TIERGATE_LOG_LEVEL": "warning",
            # Links and checkpoints must not depend on which replica answered.
            "TIERGATE_PUBLIC_URL": "http://tiergate.test",
            **self.env,
        }
        log_path = self.data_dir.parent / f"replica-{number}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Replica(port=port, process=process, log_path=log_path)

    def _wait_ready(self, replica: Replica) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if replica.process.poll() is not None:
                raise RuntimeError(f"replica exited early:\n{replica.log_tail()}")
            try:
                if httpx.get(f"{replica.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"replica not ready in {READY_TIMEOUT}s:\n{replica.log_tail()}")

    def stop(self) -> None:
        # Signal all first so they drain in parallel, then wait for each.
        for replica in self.members:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.members:
            replica.terminate(timeout=15)


@contextmanager
def running_replicas(
    count: int, *, data_dir: Path, database_url: str, env: dict[str, str] | None = None
) -> Iterator[Replicas]:
    replicas = Replicas(data_dir=data_dir, database_url=database_url, env=env or {})
    try:
        replicas.start(count)
        yield replicas
    finally:
        replicas.stop()
