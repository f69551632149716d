"""C2SP tlog-checkpoint bodies, signed into notes by the log key and opened by verifiers."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from licensing.errors import (
    CheckpointMalformedError,
    NoteUnverifiedError,
    TlogInconsistentError,
    TlogProofInvalidError,
)
from licensing.tlog.merkle import EMPTY_ROOT, HASH_SIZE, MAX_TREE_SIZE, verify_consistency
from licensing.tlog.note import Signer, Verifier, open_note, sign_note

__all__ = [
    "Checkpoint",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, size, RFC 6962 root hash and optional opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointMalformedError("origin must be one non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointMalformedError("tree size out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointMalformedError(f"root hash must be {HASH_SIZE} bytes")
        if self.size == 0 and not hmac.compare_digest(self.root_hash, EMPTY_ROOT):
            raise CheckpointMalformedError("the empty tree has root SHA-256('')")
        for line in self.extensions:
            if not line or "\n" in line:
                raise CheckpointMalformedError("extension lines must be single non-empty lines")

    def body(self) -> str:
        """The note text: origin, size, base64 root, extensions, each ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "".join(line + "\n" for line in (*lines, *self.extensions))


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body (the note text, not the signed note)."""
    if not text.endswith("\n"):
        raise CheckpointMalformedError("checkpoint must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointMalformedError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isascii() or not size_text.isdigit():
        raise CheckpointMalformedError("tree size must be an ASCII decimal")
    if size_text != "0" and size_text.startswith("0"):
        raise CheckpointMalformedError("tree size has leading zeros")
    if len(size_text) > 20:
        raise CheckpointMalformedError("tree size out of range")
    try:
        root = base64.b64decode(root_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointMalformedError("root hash is not base64") from None
    if base64.b64encode(root).decode() != root_text:
        raise CheckpointMalformedError("root hash is not canonical base64")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(
    checkpoint: Checkpoint,
    signer: Signer,
    *,
    previous: Checkpoint | None,
    consistency_proof: Sequence[bytes] = (),
) -> str:
    """Sign ``checkpoint`` into a note.

    A log must never sign two inconsistent checkpoints, so ``previous`` (the last checkpoint this
    log signed, ``None`` only for its very first) is required, and ``consistency_proof`` from it
    must verify before anything is signed.
    """
    if previous is not None:
        if previous.origin != checkpoint.origin:
            raise TlogInconsistentError("checkpoint origin differs from the previous one")
        try:
            verify_consistency(
                previous.size,
                checkpoint.size,
                previous.root_hash,
                checkpoint.root_hash,
                consistency_proof,
            )
        except TlogProofInvalidError as exc:
            raise TlogInconsistentError(
                f"refusing to sign: size {checkpoint.size} does not extend size {previous.size}"
                f" ({exc.message})"
            ) from None
    return sign_note(checkpoint.body(), [signer])


def open_checkpoint(
    note: str | bytes, verifiers: Iterable[Verifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body.

    Only signatures whose key name equals the checkpoint origin count as the log's, so a
    witness key cannot stand in for the log key. ``origin``, when given, must match.
    """
    trusted = list(verifiers)
    opened = open_note(note, trusted)
    checkpoint = parse_checkpoint(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointMalformedError(
            f"checkpoint origin {checkpoint.origin!r} is not the expected {origin!r}"
        )
    if not any(v.name == checkpoint.origin for v in opened.verified_by):
        raise NoteUnverifiedError("no trusted log key named after the checkpoint origin signed it")
    return checkpoint
