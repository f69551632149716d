"""DSSE v1 envelopes: pre-authentication encoding, JSON form, signing and verification.

Spec: https://github.com/secure-systems-lab/dsse (protocol.md, envelope.md). Verification is
threshold 1 over a caller-given set of trusted keys; ``keyid`` is only a hint and never decides.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from licensing._fields import as_list, as_object, check_keys
from licensing.canonical import canonical_json, parse_json
from licensing.errors import (
    CanonicalJSONError,
    EnvelopeFormatError,
    EnvelopeTooLargeError,
    SignatureVerificationError,
)
from licensing.keys import PrivateKey, PublicKey

__all__ = [
    "DEFAULT_MAX_ENVELOPE_BYTES",
    "MAX_SIGNATURES",
    "Envelope",
    "Signature",
    "VerifiedEnvelope",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

DEFAULT_MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_SIGNATURES = 16
_MAX_PAYLOAD_TYPE = 256
_MAX_KEYID = 256
# Our keys make signatures of at most 72 (DER ECDSA P-256) or 64 (Ed25519) bytes; the slack
# leaves room for other algorithms without letting a signature field carry megabytes.
_MAX_SIG_BYTES = 1024

_ENVELOPE_KEYS = frozenset({"payload", "payloadType", "signatures"})
_B64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths in bytes, in decimal."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    """One DSSE signature: raw signature bytes and an optional, unauthenticated key id hint."""

    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope. ``payload`` is the exact signed bytes; never re-serialize it."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_dict(self) -> dict[str, object]:
        """The envelope.md JSON object, with standard padded base64."""
        signatures: list[dict[str, object]] = []
        for signature in self.signatures:
            entry: dict[str, object] = {"sig": _b64encode(signature.sig)}
            if signature.keyid:
                entry["keyid"] = signature.keyid
            signatures.append(entry)
        return {
            "payload": _b64encode(self.payload),
            "payloadType": self.payload_type,
            "signatures": signatures,
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes of :meth:`to_dict`."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> Envelope:
        """Parse untrusted JSON bytes; raises :class:`EnvelopeTooLargeError` or
        :class:`EnvelopeFormatError`, nothing else."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise EnvelopeFormatError("an envelope must be bytes")
        if len(data) > max_bytes:
            raise EnvelopeTooLargeError(f"envelope is {len(data)} bytes; the limit is {max_bytes}")
        try:
            value = parse_json(bytes(data), max_bytes=max_bytes)
        except CanonicalJSONError as exc:
            raise EnvelopeFormatError(f"envelope is not valid JSON: {exc.message}") from exc
        return cls.from_dict(value)

    @classmethod
    def from_dict(cls, value: object) -> Envelope:
        """Build from an already parsed JSON object (e.g. the ``dsseEnvelope`` of a bundle)."""
        err = EnvelopeFormatError
        obj = as_object(value, "envelope", err)
        check_keys(
            obj, "envelope", err, required=frozenset({"payload", "payloadType", "signatures"})
        )
        payload_type = obj["payloadType"]
        if not isinstance(payload_type, str) or not 0 < len(payload_type) <= _MAX_PAYLOAD_TYPE:
            raise err("envelope.payloadType must be a non-empty string")
        payload = _b64decode(obj["payload"], "envelope.payload")
        raw_signatures = as_list(
            obj["signatures"], "envelope.signatures", err, max_items=MAX_SIGNATURES
        )
        if not raw_signatures:
            raise err("envelope.signatures is empty")
        signatures: list[Signature] = []
        for index, raw in enumerate(raw_signatures):
            what = f"envelope.signatures[{index}]"
            item = as_object(raw, what, err)
            check_keys(item, what, err, required=frozenset({"sig"}), optional=frozenset({"keyid"}))
            keyid = item.get("keyid")
            if keyid is None:
                keyid = ""
            if not isinstance(keyid, str) or len(keyid) > _MAX_KEYID:
                raise err(f"{what}.keyid must be a short string")
            sig = _b64decode(item["sig"], f"{what}.sig")
            if not 0 < len(sig) <= _MAX_SIG_BYTES:
                raise err(f"{what}.sig has an implausible length")
            signatures.append(Signature(sig=sig, keyid=keyid))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


@dataclass(frozen=True)
class VerifiedEnvelope:
    """What verification established: this payload, of this type, was signed by ``key``."""

    payload_type: str
    payload: bytes
    key: PublicKey


def sign_envelope(
    payload_type: str, payload: bytes, key: PrivateKey, *, keyid: str | None = None
) -> Envelope:
    """Sign ``PAE(payload_type, payload)``; ``keyid`` defaults to the key's id."""
    signature = key.sign(pae(payload_type, payload))
    return Envelope(
        payload_type=payload_type,
        payload=payload,
        signatures=(Signature(sig=signature, keyid=key.key_id if keyid is None else keyid),),
    )


def verify_envelope(envelope: Envelope, trusted_keys: Iterable[PublicKey]) -> VerifiedEnvelope:
    """Return the first trusted key that verifies a signature of ``envelope`` (threshold 1).

    Raises :class:`SignatureVerificationError` when none does. Every (signature, key) pair is
    tried regardless of ``keyid``, which is unauthenticated; the signature count is bounded.
    The payload type is *not* checked here: callers compare it to the type they expect.
    """
    keys = list(trusted_keys)
    if not keys:
        raise SignatureVerificationError("no trusted keys were given")
    if not envelope.signatures or len(envelope.signatures) > MAX_SIGNATURES:
        raise SignatureVerificationError("the envelope has no usable signatures")
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        for key in keys:
            if key.verify(signature.sig, message):
                return VerifiedEnvelope(envelope.payload_type, envelope.payload, key)
    raise SignatureVerificationError("no signature verifies under a trusted key")


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: object, what: str) -> bytes:
    # protocol.md: verifiers MUST accept both standard and URL-safe base64. We also accept
    # missing padding, which some signers omit, but no whitespace or stray characters.
    if not isinstance(value, str) or _B64.fullmatch(value) is None:
        raise EnvelopeFormatError(f"{what} is not base64")
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        raise EnvelopeFormatError(f"{what} is not base64 (bad length)")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeFormatError(f"{what} is not base64") from exc
