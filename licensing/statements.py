"""tiergate's own in-toto predicates: the release statement and the usage attestation.

Release statement (predicate ``https://tiergate.dev/release/v1``), subjects:
``{name: "ORG/NAME@VERSION", digest: {sha256: content digest}}`` where the content digest is the
sha256 of the canonical JSON ``{tier name: manifest digest}``, then one
``{name: "ORG/NAME@VERSION#TIER", digest: {sha256: manifest digest}}`` per tier (the manifest
digest is the tier's model_signing subject digest). Fidelity values are plain decimal strings
(``format_decimal``), because canonical JSON carries no floats.

Usage attestation (predicate ``https://tiergate.dev/attestation/usage/v1``), one subject:
``{name: "ORG/NAME@VERSION", digest: {sha256: release digest}}`` where the release digest is the
sha256 of the release statement's DSSE payload bytes (:func:`release_digest`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from licensing._common import format_decimal
from licensing._release import (
    RELEASE_PREDICATE_TYPE,
    ApprovalMode,
    ApprovalPolicy,
    FieldType,
    GatedField,
    ReleaseStatement,
    TierRecord,
    release_from_statement,
    tier_record,
)
from licensing._usage import (
    DEFAULT_ATTESTATION_LIFETIME_SECONDS,
    DEFAULT_MAX_ATTESTATION_BYTES,
    DEFAULT_MAX_LIFETIME_SECONDS,
    USAGE_PREDICATE_TYPE,
    UsageAttestation,
    build_usage_attestation,
    new_nonce,
    parse_usage_attestation,
    sign_usage_attestation,
    verify_usage_attestation,
)
from licensing.canonical import sha256_hex
from licensing.dsse import Envelope, sign_envelope, verify_envelope
from licensing.errors import EnvelopeError, LicensingError, ReleaseStatementError
from licensing.intoto import PAYLOAD_TYPE, parse_statement
from licensing.keys import PrivateKey, PublicKey
from licensing.layout import TierFile

__all__ = [
    "DEFAULT_ATTESTATION_LIFETIME_SECONDS",
    "DEFAULT_MAX_ATTESTATION_BYTES",
    "DEFAULT_MAX_LIFETIME_SECONDS",
    "DEFAULT_MAX_RELEASE_BYTES",
    "RELEASE_PREDICATE_TYPE",
    "USAGE_PREDICATE_TYPE",
    "ApprovalMode",
    "ApprovalPolicy",
    "FieldType",
    "GatedField",
    "ReleaseStatement",
    "TierFile",
    "TierRecord",
    "UsageAttestation",
    "VerifiedRelease",
    "build_usage_attestation",
    "format_decimal",
    "new_nonce",
    "parse_release_statement",
    "parse_usage_attestation",
    "release_digest",
    "sign_release_statement",
    "sign_usage_attestation",
    "tier_record",
    "verify_release_statement",
    "verify_usage_attestation",
]

# A release lists every file of every tier; 16 MiB is tens of thousands of files.
DEFAULT_MAX_RELEASE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedRelease:
    """A release statement whose signature verified, with the digest attestations refer to."""

    release: ReleaseStatement
    release_digest: str
    payload: bytes
    key: PublicKey


def release_digest(payload: bytes) -> str:
    """sha256 hex of a release statement's DSSE payload: the subject of usage attestations."""
    return sha256_hex(payload)


def sign_release_statement(release: ReleaseStatement, key: PrivateKey) -> Envelope:
    """Sign the canonical statement; write it out with ``Envelope.to_json()``."""
    return sign_envelope(PAYLOAD_TYPE, release.to_payload(), key)


def parse_release_statement(
    payload: bytes, *, max_bytes: int = DEFAULT_MAX_RELEASE_BYTES
) -> ReleaseStatement:
    """Parse a release statement payload (no signature check); raises ReleaseStatementError."""
    try:
        statement = parse_statement(
            payload, max_bytes=max_bytes, predicate_type=RELEASE_PREDICATE_TYPE
        )
    except LicensingError as exc:
        raise ReleaseStatementError(exc.message) from exc
    return release_from_statement(statement)


def verify_release_statement(
    envelope_bytes: bytes,
    trusted_keys: Iterable[PublicKey],
    *,
    max_bytes: int = DEFAULT_MAX_RELEASE_BYTES,
) -> VerifiedRelease:
    """Verify a signed release statement against the publisher's keys and parse it."""
    try:
        envelope = Envelope.from_json(envelope_bytes, max_bytes=max_bytes)
        verified = verify_envelope(envelope, trusted_keys)
    except EnvelopeError as exc:
        raise ReleaseStatementError(f"release envelope: {exc.message}") from exc
    if verified.payload_type != PAYLOAD_TYPE:
        raise ReleaseStatementError(f"payload type must be {PAYLOAD_TYPE}")
    release = parse_release_statement(verified.payload, max_bytes=max_bytes)
    return VerifiedRelease(
        release=release,
        release_digest=release_digest(verified.payload),
        payload=verified.payload,
        key=verified.key,
    )
