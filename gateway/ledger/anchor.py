"""The checkpoint anchor: the latest checkpoint this gateway signed, kept outside its database.

Everything the integrator checks (entries, nodes, state row, previous checkpoints) lives in the
database, so a database restored from an older backup is self-consistent and passes every check
made against itself; signing on top of it would fork the log (two checkpoints of one size with
different roots). The anchor is the one thing a restore does not roll back: a signed note in
the keys directory, written atomically (temp file, fsync, rename, fsync of the directory) after
each checkpoint commits, and only ever moved forward. Before signing, and at start-up, the
stored tree must equal the anchor (same size) or extend it (a consistency proof from the stored
nodes verifies against both signed roots); a smaller tree is a rollback.

Replicas: each gateway process checks against the anchor in its own keys directory. Replicas
sharing one keys volume share one anchor (the update is serialized by an exclusive file lock
and never moves backward); replicas with separate keys directories each keep their own, which
is weaker only in that a replica that signed less recently remembers an older size. Witnesses
(``docs/tlog.md``) are the anchor that no operator-side restore can reach.
"""

from __future__ import annotations

import fcntl
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from licensing.errors import TlogInconsistentError, TlogProofInvalidError, TransparencyLogError
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint
from licensing.tlog.merkle import NodeReader, consistency_proof, verify_consistency
from licensing.tlog.note import MAX_NOTE_BYTES, Verifier

__all__ = ["ANCHOR_FILE", "CheckpointAnchor", "check_against_anchor"]

ANCHOR_FILE = "log-checkpoint-anchor.note"


class CheckpointAnchor:
    """The anchor file of one keys directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # An exclusive lock across processes sharing the keys dir: read-compare-write is atomic.
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self) -> bytes | None:
        try:
            with self.path.open("rb") as handle:
                data = handle.read(MAX_NOTE_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(data) > MAX_NOTE_BYTES:
            raise TlogInconsistentError(f"checkpoint anchor {self.path} is too large")
        return data

    def load(self, verifier: Verifier, origin: str) -> Checkpoint | None:
        """The anchored checkpoint (its signature checked), or None when there is none yet.

        An anchor that does not verify is reported as an inconsistency, never ignored: dropping
        a file is not a way to disarm the rollback check.
        """
        data = self._read()
        if data is None:
            return None
        try:
            return open_checkpoint(data, [verifier], origin=origin)
        except TransparencyLogError as exc:
            raise TlogInconsistentError(
                f"checkpoint anchor {self.path} does not verify ({exc.code}: {exc})"
            ) from None

    def save(self, note: str, verifier: Verifier, origin: str) -> None:
        """Record ``note`` unless the anchor already holds a larger checkpoint."""
        new = open_checkpoint(note, [verifier], origin=origin)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            current = self.load(verifier, origin)
            if current is not None and current.size >= new.size:
                return
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(note.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


def check_against_anchor(
    anchor: Checkpoint, size: int, root_hash: bytes, reader: NodeReader
) -> None:
    """Raise unless the tree ``(size, root_hash)`` equals or extends the anchored checkpoint.

    ``root_hash`` must already be tied to a signed checkpoint; the consistency proof is built
    from stored nodes, which a verifying proof makes trustworthy whatever their origin.
    """
    if size < anchor.size:
        raise TlogInconsistentError(
            f"rollback: the database holds a tree of size {size} but this gateway already "
            f"signed size {anchor.size} (restored from an older backup?)"
        )
    if size == anchor.size:
        if not hmac.compare_digest(root_hash, anchor.root_hash):
            raise TlogInconsistentError(
                f"fork: the database's tree of size {size} is not the one this gateway signed"
            )
        return
    try:
        proof = consistency_proof(anchor.size, size, reader)
        verify_consistency(anchor.size, size, anchor.root_hash, root_hash, proof)
    except TlogProofInvalidError as exc:
        raise TlogInconsistentError(
            f"fork: the database's tree of size {size} does not extend the size {anchor.size} "
            f"this gateway signed ({exc.message})"
        ) from None
