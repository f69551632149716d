"""The witness's own state: the latest checkpoint it cosigned per log, in its state directory.

Checking ``old`` against the stored size and recording the new checkpoint must be one atomic
step (the spec's rollback race), and the record must be durable before the cosignature is
returned: one process-wide lock plus an exclusive file lock around read-decide-write, and the
file replaced atomically (temp file, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from licensing.errors import WitnessError
from licensing.tlog.witness import WitnessedCheckpoint

__all__ = ["STATE_FILE", "WitnessStateCorrupt", "WitnessStore"]

STATE_FILE = "witness-state.json"
_REFUSALS_FILE = "refused.log"
_MAX_STATE_BYTES = 16 << 20
T = TypeVar("T")
Latest = dict[str, WitnessedCheckpoint]


class WitnessStateCorrupt(Exception):
    """The state file cannot be read back: the witness refuses to run rather than forget."""


class WitnessStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.load()  # fail at start-up, not on the first request

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def load(self) -> Latest:
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(_MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {}
        try:
            if len(raw) > _MAX_STATE_BYTES:
                raise ValueError("state file too large")
            data = json.loads(raw)
            return {
                origin: WitnessedCheckpoint(
                    origin, int(item["size"]), base64.b64decode(item["root"], validate=True)
                )
                for origin, item in data["logs"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise WitnessStateCorrupt(f"witness state {self.path} is unreadable: {exc}") from None

    def _save(self, latest: Latest) -> None:
        data = {
            "logs": {
                origin: {"size": cp.size, "root": base64.b64encode(cp.root_hash).decode()}
                for origin, cp in sorted(latest.items())
            }
        }
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(data, indent=2).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def update(self, decide: Callable[[Latest], tuple[WitnessedCheckpoint, T]]) -> T:
        """Run ``decide`` on the current state and persist what it returns, atomically."""
        with self._locked():
            latest = self.load()
            state, answer = decide(latest)
            latest[state.origin] = state
            self._save(latest)
            return answer

    def record_refusal(self, error: WitnessError, request: bytes) -> None:
        """Keep refused requests: a signed checkpoint that fails its proof is fork evidence."""
        stamp = datetime.now(UTC).isoformat()
        line = json.dumps(
            {
                "time": stamp,
                "code": error.code,
                "detail": str(error)[:500],
                "request": request[:65536].decode("utf-8", "replace"),
            }
        )
        with self._lock, (self.directory / _REFUSALS_FILE).open("a", encoding="utf-8") as f:
            f.write(line + "\n")
