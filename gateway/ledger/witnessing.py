"""Collect witness cosignatures (c2sp.org/tlog-witness) for the latest signed checkpoint.

After each integration the runtime asks every configured witness to cosign the latest
checkpoint: ``old`` is the size that witness last cosigned (learnt from a 409 when unknown),
the consistency proof comes from the stored nodes, and each returned line is verified with the
witness's vkey before it is stored in `log_cosignatures`; ``/log/checkpoint`` serves the note
with them appended. A witness that already cosigned a *larger* tree, or that rejects our
consistency proof (422), has seen a history this database no longer holds: the log is marked
tampered. Network failures only delay cosigning (exponential back-off per witness).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.db.engine import session_scope
from gateway.db.models import LogCheckpoint, LogCosignature
from gateway.db.timeutil import utcnow
from gateway.ledger.nodes import SqlNodeReader
from licensing.errors import TlogInconsistentError, TransparencyLogError
from licensing.tlog.cosignature import CosignatureVerifier
from licensing.tlog.merkle import consistency_proof, consistency_proof_node_ids
from licensing.tlog.note import parse_note
from licensing.tlog.witness import format_add_checkpoint

__all__ = ["WitnessEndpoint", "WitnessPool", "cosignature_lines", "parse_witness_setting"]

log = logging.getLogger("tiergate.ledger.witness")

_cosigs = LogCosignature.__table__  # type: ignore[attr-defined]
_checkpoints = LogCheckpoint.__table__  # type: ignore[attr-defined]
_MAX_RESPONSE = 64 * 1024
_MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    verifier: CosignatureVerifier
    url: str  # the submission prefix; requests go to <url>/add-checkpoint

    @property
    def name(self) -> str:
        return self.verifier.name


def parse_witness_setting(value: str) -> WitnessEndpoint:
    """``"<vkey> <submission URL>"``, as ``TIERGATE_LOG_WITNESSES`` lists them."""
    vkey, _, url = value.strip().partition(" ")
    if not url.strip().startswith(("http://", "https://")):
        raise ValueError(f"witness setting {value!r} must be '<vkey> <http(s) URL>'")
    return WitnessEndpoint(CosignatureVerifier.from_vkey(vkey), url.strip().rstrip("/"))


def cosignature_lines(session: Session, size: int) -> str:
    """The stored cosignature lines for checkpoint ``size``, in witness-name order."""
    rows = session.execute(
        select(_cosigs.c.line).where(_cosigs.c.size == size).order_by(_cosigs.c.witness)
    ).all()
    return "".join(str(row[0]) for row in rows)


@dataclass
class _Progress:
    known_size: int | None = None
    retry_at: float = 0.0
    backoff: float = 0.0
    last_error: str | None = None


@dataclass
class WitnessPool:
    """The configured witnesses and what this process knows of each."""

    endpoints: Sequence[WitnessEndpoint]
    timeout: float = 5.0
    transport: httpx.BaseTransport | None = None
    _progress: dict[str, _Progress] = field(default_factory=dict)

    def errors(self) -> dict[str, str]:
        return {n: p.last_error for n, p in self._progress.items() if p.last_error}

    def collect(self, engine: Engine) -> None:
        """Get every missing cosignature of the latest checkpoint; raise on evidence of a fork.

        A witness this process has not talked to yet is asked even when the database already
        holds its cosignature: a restored database carries old cosignatures, and the first
        exchange is what reveals that the witness has seen a larger tree.
        """
        latest = _latest(engine)
        if latest is None:
            return
        size, note = latest
        with Session(engine) as session:
            have = {
                str(r[0])
                for r in session.execute(select(_cosigs.c.witness).where(_cosigs.c.size == size))
            }
        now = time.monotonic()
        for endpoint in self.endpoints:
            progress = self._progress.setdefault(endpoint.name, _Progress())
            if endpoint.name in have and progress.known_size is not None:
                continue
            if now < progress.retry_at:
                continue
            try:
                line = self._cosign(engine, endpoint, progress, size, note)
            except _Behind as behind:
                # Another replica may have signed (and had cosigned) a newer checkpoint since
                # we read ours; only a database that still lacks that size was rolled back.
                newest = _latest(engine)
                if newest is None or newest[0] < behind.witness_size:
                    raise TlogInconsistentError(
                        f"rollback: witness {endpoint.name} already cosigned size "
                        f"{behind.witness_size}, past this database's latest checkpoint "
                        f"({size})"
                    ) from None
                progress.known_size = None
                continue
            except (httpx.HTTPError, _Unavailable) as exc:
                progress.backoff = min(max(progress.backoff * 2, 0.5), _MAX_BACKOFF)
                progress.retry_at = time.monotonic() + progress.backoff
                progress.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("witness %s: %s", endpoint.name, progress.last_error)
                continue
            progress.backoff, progress.retry_at, progress.last_error = 0.0, 0.0, None
            self._store(engine, size, endpoint.name, line)

    def _cosign(
        self,
        engine: Engine,
        endpoint: WitnessEndpoint,
        progress: _Progress,
        size: int,
        note: str,
    ) -> str:
        with httpx.Client(timeout=self.timeout, transport=self.transport) as http:
            for _ in range(2):  # a 409 tells us the witness's size: retry once with it
                old = progress.known_size if progress.known_size is not None else 0
                if old > size:
                    raise _Behind(old)
                body = format_add_checkpoint(old, self._proof(engine, old, size), note)
                response = http.post(f"{endpoint.url}/add-checkpoint", content=body)
                text = response.text[:_MAX_RESPONSE]
                if response.status_code == 409:
                    progress.known_size = _parse_size(text, endpoint.name)
                    continue
                if response.status_code == 422:
                    raise TlogInconsistentError(
                        f"fork: witness {endpoint.name} refused size {size} as inconsistent "
                        f"with what it cosigned: {text.strip()[:200]}"
                    )
                if response.status_code != 200:
                    raise _Unavailable(f"HTTP {response.status_code}: {text.strip()[:200]}")
                line = _verified_line(endpoint, note, text)
                progress.known_size = size
                return line
        raise _Unavailable("witness kept answering 409")

    @staticmethod
    def _proof(engine: Engine, old: int, size: int) -> list[bytes]:
        if old in (0, size):
            return []
        with Session(engine) as session:
            reader = SqlNodeReader(session)
            reader.prefetch(consistency_proof_node_ids(old, size))
            return consistency_proof(old, size, reader)

    @staticmethod
    def _store(engine: Engine, size: int, witness: str, line: str) -> None:
        try:
            with session_scope(engine) as session:
                session.execute(
                    insert(_cosigs),
                    [{"size": size, "witness": witness, "line": line, "created_at": utcnow()}],
                )
        except IntegrityError:
            pass  # another replica stored this witness's cosignature first


class _Unavailable(Exception):
    """The witness did not answer usefully; retried later."""


class _Behind(Exception):
    """The witness has cosigned a larger tree than the checkpoint we offered."""

    def __init__(self, witness_size: int) -> None:
        super().__init__(witness_size)
        self.witness_size = witness_size


def _latest(engine: Engine) -> tuple[int, str] | None:
    with Session(engine) as session:
        row = session.execute(
            select(_checkpoints.c.size, _checkpoints.c.note)
            .order_by(_checkpoints.c.size.desc())
            .limit(1)
        ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def _parse_size(text: str, name: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise _Unavailable(f"witness {name} sent a 409 without a size")
    return int(value)


def _verified_line(endpoint: WitnessEndpoint, note: str, text: str) -> str:
    """The witness's own cosignature line from a 200 answer, verified over the checkpoint."""
    body = parse_note(note).text
    for raw in text.split("\n"):
        if not raw:
            continue
        try:
            signature = parse_note(body + "\n" + raw + "\n").signatures[0]
        except TransparencyLogError:
            raise _Unavailable(f"witness {endpoint.name} sent a malformed line") from None
        if endpoint.verifier.matches(signature):
            try:
                endpoint.verifier.verify(body, signature)
            except TransparencyLogError as exc:
                raise _Unavailable(f"witness {endpoint.name}: {exc}") from None
            return signature.line()
    raise _Unavailable(f"witness {endpoint.name} answered without its cosignature")
