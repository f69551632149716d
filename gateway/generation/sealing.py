"""Reasoning traces sealed to a publisher's auditor key: HPKE (RFC 9180), base mode.

Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (``cryptography``'s
``hpke`` module, single-shot: the sealed bytes are the encapsulated key then the
ciphertext). The HPKE ``info`` binds a sealed trace to its call and choice
(``tiergate/sealed-reasoning/v1`` NUL call id NUL choice), so a sealed trace moved to another
call, or another choice, does not open. The gateway holds only the public key: once sealed,
it cannot read the trace back; the auditor opens it offline with the private key
(``tiergate auditor open-trace``) and checks it against the ``reasoning_sha256`` logged.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gateway.errors import ValidationFailed

__all__ = [
    "SUITE_NAME",
    "SealedTraceInvalid",
    "generate_auditor_key",
    "open_trace",
    "public_key_of",
    "seal_trace",
]

SUITE_NAME = "HPKE-base(DHKEM-X25519-HKDF-SHA256, HKDF-SHA256, ChaCha20-Poly1305)"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_LABEL = b"tiergate/sealed-reasoning/v1"
_RAW = serialization.Encoding.Raw


class SealedTraceInvalid(ValidationFailed):
    """The sealed trace does not open with this key for this call and choice: a wrong key,
    bytes changed, or a trace moved from another call."""

    code = "sealed_trace_invalid"
    title = "Sealed trace does not open"


def _info(call_id: str, choice: int) -> bytes:
    return b"\x00".join((_LABEL, call_id.encode("utf-8"), str(choice).encode("ascii")))


def generate_auditor_key() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair, raw: (private, public)."""
    private = X25519PrivateKey.generate()
    return (
        private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
        private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw),
    )


def public_key_of(private_key: bytes) -> bytes:
    try:
        private = X25519PrivateKey.from_private_bytes(private_key)
    except ValueError:
        raise SealedTraceInvalid("the auditor private key is not 32 raw bytes") from None
    return private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)


def seal_trace(reasoning: str, public_key: bytes, *, call_id: str, choice: int) -> bytes:
    recipient = X25519PublicKey.from_public_bytes(public_key)
    return _SUITE.encrypt(reasoning.encode("utf-8"), recipient, info=_info(call_id, choice))


def open_trace(sealed: bytes, private_key: bytes, *, call_id: str, choice: int) -> str:
    """The trace, or :class:`SealedTraceInvalid` (never a foreign exception)."""
    try:
        private = X25519PrivateKey.from_private_bytes(private_key)
    except ValueError:
        raise SealedTraceInvalid("the auditor private key is not 32 raw bytes") from None
    try:
        plain = _SUITE.decrypt(sealed, private, info=_info(call_id, choice))
    except (InvalidTag, ValueError):
        raise SealedTraceInvalid(
            f"the sealed trace of call {call_id} choice {choice} does not open with this key "
            "(wrong key, changed bytes, or a trace of another call)"
        ) from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise SealedTraceInvalid("the opened trace is not UTF-8") from None
