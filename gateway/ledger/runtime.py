"""The log's life in one gateway process: start-up self-check, integration loop, tamper flag.

Integration runs in a background task every ``interval`` seconds (and on demand, e.g. when a
receipt is asked for an entry not yet integrated). Any number of processes may run it on one
database: the `log_state` row lock serializes them, and an idle tick takes no lock at all.
Once the self-check or an integration finds the stored log inconsistent, this process stops
signing for good (until restarted after repair) and /readyz says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.db.engine import session_scope
from gateway.db.timeutil import utcnow
from gateway.errors import ServiceUnavailable
from gateway.ledger.errors import LogTampered
from gateway.ledger.integrate import (
    DEFAULT_BATCH,
    Integration,
    LogKey,
    integrate,
    origin_from_base_url,
    pending_entries,
    stored_origin,
)
from gateway.ledger.selfcheck import check_stored_log, snapshot_session
from licensing.errors import TransparencyLogError

if TYPE_CHECKING:
    from gateway.state import GatewayState, SchemaStatus

__all__ = ["DEFAULT_INTERVAL", "LedgerRuntime", "LedgerStatus"]

log = logging.getLogger("tiergate.ledger")

DEFAULT_INTERVAL = 0.5


@dataclass
class LedgerStatus:
    checked: bool = False
    tampered: str | None = None
    last_error: str | None = None


class LedgerRuntime:
    """Owns the log key, the tamper flag and integration for one gateway process."""

    def __init__(
        self,
        engine: Engine,
        signing_key: Ed25519PrivateKey,
        base_url: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        selfcheck_max_entries: int | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.engine = engine
        self.status = LedgerStatus()
        self.interval = interval
        self.selfcheck_max_entries = selfcheck_max_entries
        self.batch = batch
        self._signing_key = signing_key
        self._base_url = base_url
        self._key: LogKey | None = None
        self._lock = threading.Lock()
        self._has_checkpoint = False

    @classmethod
    def for_gateway(cls, state: GatewayState) -> LedgerRuntime:
        settings = state.settings
        interval = settings.log_integrate_interval_seconds
        max_entries = settings.log_selfcheck_max_entries
        return cls(
            state.engine,
            state.keyring.log_signing_key,
            settings.base_url,
            interval=interval,
            selfcheck_max_entries=max_entries,
        )

    def key(self, session: Session | None = None) -> LogKey:
        """The log key, named after the log's origin: the stored log's, else the base URL's."""
        if self._key is None:
            origin = None
            if session is not None:
                origin = stored_origin(session)
            else:
                with Session(self.engine) as fresh:
                    origin = stored_origin(fresh)
            self._key = LogKey.from_private_key(
                self._signing_key, origin or origin_from_base_url(self._base_url)
            )
        return self._key

    # ------------------------------------------------------------------ checks and integration

    def mark_tampered(self, why: str) -> None:
        if self.status.tampered is None:
            log.error("transparency log inconsistent, no more checkpoints will be signed: %s", why)
        self.status.tampered = why

    def self_check(self) -> str | None:
        """Verify the stored log; on a problem set the tamper flag. Returns the problem."""
        with snapshot_session(self.engine) as session:
            problem = check_stored_log(
                session, self.key(session), max_entries=self.selfcheck_max_entries
            )
        self.status.checked = True
        if problem is not None:
            self.mark_tampered(problem)
        else:
            log.info("transparency log self-check passed")
        return problem

    def readiness(self) -> str:
        if self.status.tampered is not None:
            return f"tampered: {self.status.tampered}"
        return "ok" if self.status.checked else "pending"

    def ensure_signing(self) -> None:
        if self.status.tampered is not None:
            raise LogTampered(f"the log failed its integrity check: {self.status.tampered}")

    def integrate_now(self, *, now: datetime | None = None) -> Integration | None:
        """Integrate everything appended so far; None when there was nothing to do."""
        self.ensure_signing()
        with self._lock:
            if self._has_checkpoint:
                with Session(self.engine) as session:
                    if pending_entries(session) == 0:
                        return None
            last: Integration | None = None
            while True:
                try:
                    with session_scope(self.engine) as session:
                        step = integrate(
                            session, self.key(session), now=now or utcnow(), max_entries=self.batch
                        )
                except TransparencyLogError as exc:
                    self.mark_tampered(f"{exc.code}: {exc}")
                    raise LogTampered(f"the log failed its integrity check: {exc}") from None
                self._has_checkpoint = True
                if step.note is not None:
                    last = step
                if step.size - step.old_size < self.batch:
                    return last

    def tick(self) -> None:
        """One loop iteration: self-check once, then integrate; errors are recorded, not raised."""
        try:
            if not self.status.checked:
                self.self_check()
            if self.status.tampered is None:
                self.integrate_now()
            self.status.last_error = None
        except ServiceUnavailable:
            pass
        except Exception as exc:  # database hiccups: retry next tick
            self.status.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.warning("log integration failed: %s", self.status.last_error)

    @asynccontextmanager
    async def running(self, schema: SchemaStatus) -> AsyncIterator[None]:
        """Lifespan hook: self-check before serving (when the schema is ready), then the loop."""
        if schema.ready:
            await asyncio.to_thread(self.tick)
        task = asyncio.create_task(self._loop(schema))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, schema: SchemaStatus) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if schema.ready:
                await asyncio.to_thread(self.tick)
