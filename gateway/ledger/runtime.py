"""The log's life in one gateway process: start-up self-check, integration loop, tamper flag.

Integration runs in a background task every ``interval`` seconds (and on demand, e.g. when a
receipt is asked for an entry not yet integrated). Any number of processes may run it on one
database: the `log_state` row lock serializes them, and an idle tick takes no lock at all.
Once the self-check or an integration finds the stored log inconsistent, this process stops
signing for good (until restarted after repair) and /readyz says why. Anything that is not a
database or file-system hiccup counts: a stored value so malformed that a check cannot even
parse it is tampering too, never a retry loop.

Between integrations, idle ticks keep re-verifying integrated entries window by window
(:mod:`gateway.ledger.recheck`) every ``recheck_interval`` seconds, so an edit made while the
gateway runs turns /readyz to "tampered" even when no new entry arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway.db.engine import session_scope
from gateway.db.timeutil import utcnow
from gateway.errors import ConfigurationError, ServiceUnavailable
from gateway.ledger.anchor import ANCHOR_FILE, CheckpointAnchor
from gateway.ledger.errors import LogTampered
from gateway.ledger.integrate import (
    DEFAULT_BATCH,
    Integration,
    LogKey,
    _open_previous,
    integrate,
    latest_checkpoint,
    origin_from_base_url,
    pending_entries,
    stored_origin,
)
from gateway.ledger.recheck import DEFAULT_BLOCK_BITS, recheck_window
from gateway.ledger.selfcheck import check_stored_log, snapshot_session
from gateway.ledger.witnessing import WitnessPool, parse_witness_setting
from licensing.errors import TransparencyLogError
from licensing.tlog.checkpoint import Checkpoint

if TYPE_CHECKING:
    from gateway.state import GatewayState, SchemaStatus

__all__ = ["DEFAULT_INTERVAL", "LedgerRuntime", "LedgerStatus"]

log = logging.getLogger("tiergate.ledger")

DEFAULT_INTERVAL = 0.5
#: Seconds between idle re-checks of one window of integrated entries.
DEFAULT_RECHECK_INTERVAL = 5.0
#: Failures that are the environment's, retried on the next tick; anything else is tampering.
_TRANSIENT = (SQLAlchemyError, OSError, ServiceUnavailable)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TransparencyLogError):
        return f"{exc.code}: {exc}"
    # A check that could not even parse what is stored: report it, never retry it forever.
    return f"malformed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


@dataclass
class LedgerStatus:
    checked: bool = False
    tampered: str | None = None
    last_error: str | None = None


def _witness_pool(values: list[str], timeout: float) -> WitnessPool | None:
    if not values:
        return None
    try:
        return WitnessPool([parse_witness_setting(v) for v in values], timeout=timeout)
    except (ValueError, TransparencyLogError) as exc:
        raise ConfigurationError(f"TIERGATE_LOG_WITNESSES: {exc}") from None


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
        anchor: CheckpointAnchor | None = None,
        recheck_bits: int = DEFAULT_BLOCK_BITS,
        recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
        witnesses: WitnessPool | None = None,
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
        self.anchor = anchor
        self.recheck_bits = recheck_bits
        self.recheck_interval = recheck_interval
        self._recheck_block = 0
        self.witnesses = witnesses
        self._last_recheck = time.monotonic()

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
            anchor=CheckpointAnchor(
                settings.log_anchor_file or settings.resolved_keys_dir / ANCHOR_FILE
            ),
            recheck_interval=settings.log_recheck_interval_seconds,
            witnesses=_witness_pool(settings.log_witnesses, settings.log_witness_timeout_seconds),
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

    def _load_anchor(self, key: LogKey) -> Checkpoint | None:
        if self.anchor is None:
            return None
        return self.anchor.load(key.verifier, key.origin)

    def _save_anchor(self, note: str, key: LogKey) -> None:
        if self.anchor is None:
            return
        try:
            self.anchor.save(note, key.verifier, key.origin)
        except OSError as exc:
            # The checkpoint is committed; an anchor that lags behind only weakens the check.
            log.warning("could not update the checkpoint anchor %s: %s", self.anchor.path, exc)

    def self_check(self) -> str | None:
        """Verify the stored log; on a problem set the tamper flag. Returns the problem."""
        latest: str | None = None
        with snapshot_session(self.engine) as session:
            key = self.key(session)
            try:
                problem = check_stored_log(
                    session,
                    key,
                    max_entries=self.selfcheck_max_entries,
                    anchor=self._load_anchor(key),
                )
            except _TRANSIENT:
                raise
            except Exception as exc:
                problem = _describe(exc)
            row = latest_checkpoint(session) if problem is None else None
            latest = row.note if row is not None else None
        self.status.checked = True
        if problem is not None:
            self.mark_tampered(problem)
            return problem
        if latest is not None:
            # First start with an anchor (or after an upgrade): trust the checked database once.
            self._save_anchor(latest, key)
        log.info("transparency log self-check passed")
        return None

    def recheck_now(self) -> None:
        """Re-verify the next window of integrated entries against the latest checkpoint."""
        self.ensure_signing()
        with self._lock:
            block = self._recheck_block
            self._recheck_block += 1
            try:
                with Session(self.engine) as session:
                    row = latest_checkpoint(session)
                    if row is None:
                        return
                    # Entries, nodes and checkpoints are append-only: one signed checkpoint and
                    # the rows under it need no snapshot, whatever integrates concurrently.
                    checkpoint = _open_previous(row, self.key(session))
                    recheck_window(
                        session,
                        checkpoint.size,
                        checkpoint.root_hash,
                        block=block,
                        block_bits=self.recheck_bits,
                    )
            except _TRANSIENT:
                raise
            except Exception as exc:
                self.mark_tampered(_describe(exc))
                raise LogTampered(f"the log failed its integrity check: {exc}") from None

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
                block = self._recheck_block
                self._recheck_block += 1
                try:
                    with session_scope(self.engine) as session:
                        key = self.key(session)
                        step = integrate(
                            session,
                            key,
                            now=now or utcnow(),
                            max_entries=self.batch,
                            anchor=self._load_anchor(key),
                            recheck_block=block,
                            recheck_bits=self.recheck_bits,
                        )
                except _TRANSIENT:
                    raise
                except Exception as exc:
                    self.mark_tampered(_describe(exc))
                    raise LogTampered(f"the log failed its integrity check: {exc}") from None
                self._has_checkpoint = True
                if step.note is not None:
                    self._save_anchor(step.note, key)
                    last = step
                if step.size - step.old_size < self.batch:
                    return last

    def witness_now(self) -> None:
        """Collect missing witness cosignatures of the latest checkpoint (no-op without any)."""
        if self.witnesses is None:
            return
        self.ensure_signing()
        try:
            self.witnesses.collect(self.engine)
        except TransparencyLogError as exc:
            # A witness holds a history this database lost or contradicts: stop signing.
            self.mark_tampered(_describe(exc))
            raise LogTampered(f"the log failed its integrity check: {exc}") from None

    def tick(self) -> None:
        """One loop iteration: self-check once, then integrate; errors are recorded, not raised."""
        try:
            if not self.status.checked:
                self.self_check()
            if self.status.tampered is None:
                # Witnesses first: one that cosigned a larger tree than this database holds
                # (a restore that took the anchor with it) stops signing before integration.
                self.witness_now()
                integrated = self.integrate_now()
                due = time.monotonic() - self._last_recheck >= self.recheck_interval
                if integrated is None and due:
                    self._last_recheck = time.monotonic()
                    self.recheck_now()
                if integrated is not None:
                    self.witness_now()
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
