"""C2SP tlog-cosignature/v1 (Ed25519): witnesses' timestamped signatures on a checkpoint.

A cosignature is a note signature line whose key id is computed with signature type 0x04 and
whose signature is ``u64 timestamp (big endian) || Ed25519 signature`` over::

    cosignature/v1\\n
    time <timestamp>\\n
    <the whole checkpoint body>

Verifiers are configured with the witnesses' vkeys (``name+hexid+base64(0x04 || key)``) and
ignore signature lines of any other name and key id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from licensing.errors import CosignatureInvalidError
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint
from licensing.tlog.note import (
    NoteSignature,
    PublicKeyBase,
    Signer,
    Verifier,
    parse_note,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureSigner",
    "CosignatureVerifier",
    "VerifiedCosignature",
    "cosignature_message",
    "open_cosigned_checkpoint",
]

#: Signature type byte of Ed25519 cosignature/v1 keys.
ALG_COSIGNATURE_V1 = 0x04
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_MAX_TIMESTAMP = (1 << 63) - 1


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The bytes a cosigner signs for checkpoint ``body`` at ``timestamp`` (POSIX seconds)."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise CosignatureInvalidError("cosignature timestamp out of range")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


class CosignatureVerifier(PublicKeyBase):
    """A witness's cosignature/v1 public key (signature type 0x04), from its vkey."""

    __slots__ = ()
    ALGORITHM = ALG_COSIGNATURE_V1
    _WHAT = "witness key"

    def matches(self, signature: NoteSignature) -> bool:
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, body: str, signature: NoteSignature) -> int:
        """Return the cosignature's timestamp; raise unless it verifies over ``body``."""
        if not self.matches(signature):
            raise CosignatureInvalidError(f"signature is not from {self.name}")
        blob = signature.signature
        if len(blob) != 8 + 64:
            raise CosignatureInvalidError(f"cosignature by {self.name} is not 72 bytes")
        timestamp = int.from_bytes(blob[:8], "big")
        try:
            self._key.verify(blob[8:], cosignature_message(body, timestamp))
        except InvalidSignature:
            raise CosignatureInvalidError(f"cosignature by {self.name} does not verify") from None
        return timestamp


class CosignatureSigner(Signer):
    """A witness's cosignature/v1 signing key (type 0x04); the key handling is the note
    signer's. Its key string is a secret: never log it."""

    __slots__ = ()
    ALGORITHM = ALG_COSIGNATURE_V1
    _WHAT = "witness key"

    def verifier(self) -> CosignatureVerifier:  # type: ignore[override]
        return CosignatureVerifier(self.name, self.public_key)

    def cosign(self, body: str, timestamp: int) -> NoteSignature:
        """The cosignature of checkpoint ``body`` at ``timestamp``, as a note signature."""
        signature = self.sign(cosignature_message(body, timestamp))
        return NoteSignature(self.name, self.key_id, timestamp.to_bytes(8, "big") + signature)


@dataclass(frozen=True, slots=True)
class VerifiedCosignature:
    witness: str
    timestamp: int


def open_cosigned_checkpoint(
    note: str | bytes,
    log_verifiers: Iterable[Verifier],
    witnesses: Sequence[CosignatureVerifier],
    *,
    min_witnesses: int,
    origin: str | None = None,
) -> tuple[Checkpoint, list[VerifiedCosignature]]:
    """Open a checkpoint signed by the log and require ``min_witnesses`` distinct cosigners.

    Lines from unknown keys are ignored; a line from a configured witness that does not verify
    rejects the note (a witness key does not sign garbage by accident).
    """
    checkpoint = open_checkpoint(note, log_verifiers, origin=origin)
    parsed = parse_note(note)
    found: dict[str, VerifiedCosignature] = {}
    for signature in parsed.signatures:
        for witness in witnesses:
            if witness.matches(signature):
                timestamp = witness.verify(parsed.text, signature)
                found[witness.name] = VerifiedCosignature(witness.name, timestamp)
    if len(found) < min_witnesses:
        raise CosignatureInvalidError(
            f"checkpoint {checkpoint.size} carries {len(found)} valid witness cosignature(s), "
            f"{min_witnesses} required"
        )
    return checkpoint, sorted(found.values(), key=lambda c: c.witness)
