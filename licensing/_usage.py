"""Usage attestations: a developer's signed request for a gated tier, and its verification."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from licensing import _common as c
from licensing._fields import (
    as_object,
    check_keys,
    format_time,
    get_sha256,
    get_str,
    normalize_time,
    parse_time,
)
from licensing.canonical import digests_equal, is_sha256_hex
from licensing.dsse import Envelope, sign_envelope, verify_envelope
from licensing.errors import (
    AttestationExpiredError,
    AttestationKeyMismatchError,
    AttestationLifetimeTooLongError,
    AttestationMalformedError,
    AttestationMissingFieldError,
    AttestationNotYetValidError,
    AttestationSignatureInvalidError,
    AttestationStaleTermsError,
    AttestationTooLargeError,
    AttestationWrongSubjectError,
    AttestationWrongTierError,
    EnvelopeFormatError,
    EnvelopeTooLargeError,
    LicensingError,
    SignatureVerificationError,
)
from licensing.intoto import PAYLOAD_TYPE, Statement, Subject, parse_statement
from licensing.keys import PrivateKey, PublicKey
from licensing.layout import REPO_ID_PATTERN

USAGE_PREDICATE_TYPE = "https://tiergate.dev/attestation/usage/v1"
DEFAULT_ATTESTATION_LIFETIME_SECONDS = 3600
DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600
DEFAULT_MAX_ATTESTATION_BYTES = 64 * 1024
# 22 urlsafe base64 characters carry 132 bits, the shortest nonce with at least 128.
_NONCE = re.compile(r"[A-Za-z0-9_-]{22,128}")
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_MAX_FIELDS = 64
_MAX_FIELD_VALUE = 4096
_PREDICATE_KEYS = frozenset(
    {"tier", "accepted_terms_digest", "fields", "requester_account", "requester_key_id"}
    | {"nonce", "issued_at", "expires_at"}
)

_M = AttestationMalformedError


def new_nonce() -> str:
    """256 random bits, urlsafe base64 without padding."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class UsageAttestation:
    """The signed request: who asks for which tier of which release, under which terms."""

    repo_id: str
    version: str
    release_digest: str
    tier: str
    accepted_terms_digest: str | None
    fields: Mapping[str, str]
    requester_account: str
    requester_key_id: str
    nonce: str
    issued_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        c.check(self.repo_id, REPO_ID_PATTERN, "repo_id", _M)
        c.check(self.version, c.VERSION, "version", _M)
        if not is_sha256_hex(self.release_digest):
            raise _M("release digest must be 64 lowercase hex digits")
        c.check(self.tier, c.TIER_NAME, "tier", _M)
        terms = self.accepted_terms_digest
        if terms is not None and not is_sha256_hex(terms):
            raise _M("accepted terms digest must be 64 lowercase hex digits or None")
        if len(self.fields) > _MAX_FIELDS:
            raise _M(f"at most {_MAX_FIELDS} fields")
        for name, value in self.fields.items():
            c.check(name, c.FIELD_NAME, "field name", _M)
            if not isinstance(value, str) or len(value) > _MAX_FIELD_VALUE:
                raise _M(f"field {name}: value must be a string of at most {_MAX_FIELD_VALUE}")
        c.check(self.requester_account, _ACCOUNT, "requester account", _M)
        if not is_sha256_hex(self.requester_key_id):
            raise _M("requester key id must be 64 lowercase hex digits")
        c.check(self.nonce, _NONCE, "nonce (>= 128 bits, urlsafe base64)", _M)
        object.__setattr__(self, "issued_at", normalize_time(self.issued_at, _M))
        object.__setattr__(self, "expires_at", normalize_time(self.expires_at, _M))
        if self.expires_at <= self.issued_at:
            raise _M("expires_at must be after issued_at")
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def release_name(self) -> str:
        return c.release_name(self.repo_id, self.version)

    def to_statement(self) -> Statement:
        predicate = {
            "tier": self.tier,
            "accepted_terms_digest": self.accepted_terms_digest,
            "fields": dict(self.fields),
            "requester_account": self.requester_account,
            "requester_key_id": self.requester_key_id,
            "nonce": self.nonce,
            "issued_at": format_time(self.issued_at, _M),
            "expires_at": format_time(self.expires_at, _M),
        }
        subject = Subject.sha256(self.release_name, self.release_digest)
        return Statement((subject,), USAGE_PREDICATE_TYPE, predicate)

    def to_payload(self) -> bytes:
        return self.to_statement().to_json()


def build_usage_attestation(
    *,
    repo_id: str,
    version: str,
    release_digest: str,
    tier: str,
    accepted_terms_digest: str | None,
    fields: Mapping[str, str],
    requester_account: str,
    requester_key_id: str,
    now: datetime,
    lifetime_seconds: int = DEFAULT_ATTESTATION_LIFETIME_SECONDS,
    nonce: str | None = None,
) -> UsageAttestation:
    """An attestation issued at ``now``, valid for ``lifetime_seconds``, with a fresh nonce."""
    issued = normalize_time(now, _M)
    return UsageAttestation(
        repo_id=repo_id,
        version=version,
        release_digest=release_digest,
        tier=tier,
        accepted_terms_digest=accepted_terms_digest,
        fields=fields,
        requester_account=requester_account,
        requester_key_id=requester_key_id,
        nonce=new_nonce() if nonce is None else nonce,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=lifetime_seconds),
    )


def sign_usage_attestation(attestation: UsageAttestation, key: PrivateKey) -> bytes:
    """The DSSE envelope JSON bytes the developer submits."""
    if key.key_id != attestation.requester_key_id:
        raise AttestationKeyMismatchError("sign with the key the attestation names as requester")
    return sign_envelope(PAYLOAD_TYPE, attestation.to_payload(), key).to_json()


def verify_usage_attestation(
    envelope_bytes: bytes,
    *,
    trusted_keys: Iterable[PublicKey],
    expected_release_digest: str,
    expected_terms_digest: str | None,
    required_fields: Iterable[str],
    now: datetime,
    expected_tier: str | None = None,
    max_skew_seconds: int = 300,
    max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
    max_bytes: int = DEFAULT_MAX_ATTESTATION_BYTES,
) -> UsageAttestation:
    """Verify a submitted attestation; every failure is its own :class:`AttestationError`.

    ``trusted_keys`` are the requester's registered keys; the signing key must also be the one
    the predicate names. ``now`` is the verifier's clock (never read here). Nonce replay is the
    caller's check: the nonce is on the returned value.
    """
    if not isinstance(envelope_bytes, (bytes, bytearray)):
        raise _M("an attestation must be bytes")
    if len(envelope_bytes) > max_bytes:
        raise AttestationTooLargeError(f"attestation is larger than {max_bytes} bytes")
    try:
        envelope = Envelope.from_json(bytes(envelope_bytes), max_bytes=max_bytes)
    except EnvelopeTooLargeError as exc:
        raise AttestationTooLargeError(exc.message) from exc
    except EnvelopeFormatError as exc:
        raise _M(exc.message) from exc
    if envelope.payload_type != PAYLOAD_TYPE:
        raise _M(f"payload type must be {PAYLOAD_TYPE}")
    try:
        verified = verify_envelope(envelope, trusted_keys)
    except SignatureVerificationError as exc:
        raise AttestationSignatureInvalidError("no trusted key verifies the attestation") from exc
    attestation = _parse(verified.payload, max_bytes)
    if not digests_equal(attestation.requester_key_id, verified.key.key_id):
        raise AttestationKeyMismatchError("signed by a key other than the requester key it names")
    if not digests_equal(attestation.release_digest, expected_release_digest):
        raise AttestationWrongSubjectError("the attestation is for another release")
    if expected_tier is not None and attestation.tier != expected_tier:
        raise AttestationWrongTierError(f"the attestation asks for tier {attestation.tier!r}")
    _check_terms(attestation.accepted_terms_digest, expected_terms_digest)
    # A lone string would be iterated character by character: treat it as one field name.
    required = (required_fields,) if isinstance(required_fields, str) else tuple(required_fields)
    for name in required:
        if not attestation.fields.get(name, "").strip():
            raise AttestationMissingFieldError(f"required field {name!r} is missing", field=name)
    _check_times(
        attestation, normalize_time(now, LicensingError), max_skew_seconds, max_lifetime_seconds
    )
    return attestation


def parse_usage_attestation(
    payload: bytes, *, max_bytes: int = DEFAULT_MAX_ATTESTATION_BYTES
) -> UsageAttestation:
    """Parse an attestation payload *without* verifying anything but its shape."""
    return _parse(payload, max_bytes)


def _parse(payload: bytes, max_bytes: int) -> UsageAttestation:
    try:
        statement = parse_statement(
            payload, max_bytes=max_bytes, predicate_type=USAGE_PREDICATE_TYPE
        )
    except LicensingError as exc:
        raise _M(exc.message) from exc
    if len(statement.subjects) != 1:
        raise _M("a usage attestation has exactly one subject")
    subject = statement.subjects[0]
    repo_id, version = c.split_release_name(subject.name, "subject name", _M)
    digest = subject.sha256_hex
    if digest is None:
        raise _M("the subject needs a sha256 digest")
    p = as_object(dict(statement.predicate), "predicate", _M)
    check_keys(p, "predicate", _M, required=_PREDICATE_KEYS)
    fields = as_object(p["fields"], "predicate.fields", _M)
    terms = p["accepted_terms_digest"]
    return UsageAttestation(
        repo_id=repo_id,
        version=version,
        release_digest=digest,
        tier=get_str(p, "tier", "predicate", _M),
        accepted_terms_digest=None
        if terms is None
        else get_sha256(p, "accepted_terms_digest", "predicate", _M),
        fields=fields,
        requester_account=get_str(p, "requester_account", "predicate", _M),
        requester_key_id=get_sha256(p, "requester_key_id", "predicate", _M),
        nonce=get_str(p, "nonce", "predicate", _M),
        issued_at=parse_time(p["issued_at"], "predicate.issued_at", _M),
        expires_at=parse_time(p["expires_at"], "predicate.expires_at", _M),
    )


def _check_terms(accepted: str | None, expected: str | None) -> None:
    if expected is None and accepted is None:
        return
    if expected is None or accepted is None or not digests_equal(accepted, expected):
        raise AttestationStaleTermsError("the accepted terms are not the release's current terms")


def _check_times(att: UsageAttestation, now: datetime, skew: int, max_lifetime: int) -> None:
    leeway = timedelta(seconds=skew)
    if att.issued_at > now + leeway:
        raise AttestationNotYetValidError("the attestation is issued in the future")
    if att.expires_at - att.issued_at > timedelta(seconds=max_lifetime):
        raise AttestationLifetimeTooLongError(f"lifetime exceeds {max_lifetime} seconds")
    if now - leeway >= att.expires_at:
        raise AttestationExpiredError("the attestation has expired")
