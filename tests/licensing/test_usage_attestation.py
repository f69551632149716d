from __future__ import annotations

import base64
import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.canonical import sha256_hex
from licensing.dsse import sign_envelope
from licensing.errors import (
    AttestationError,
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
)
from licensing.intoto import PAYLOAD_TYPE
from licensing.keys import PrivateKey
from licensing.statements import sign_usage_attestation
from tests.licensing._builders import (
    DEVELOPER,
    NOW,
    json_paths,
    make_attestation,
    replace_at,
    signed_payload,
    verify,
)
from tests.licensing._strategies import json_values


def test_attestation_round_trip() -> None:
    attestation = make_attestation()
    assert len(base64.urlsafe_b64decode(attestation.nonce + "==")) >= 16
    result = verify(sign_usage_attestation(attestation, DEVELOPER))
    assert result == attestation
    assert result.nonce == attestation.nonce
    assert result.release_name == "acme/tiny-llama@1.0.0"
    assert result.expires_at - result.issued_at == timedelta(hours=1)


def test_ecdsa_requester_keys_work_too() -> None:
    key = PrivateKey.generate("ecdsa-p256")
    envelope = sign_usage_attestation(make_attestation(requester_key_id=key.key_id), key)
    assert verify(envelope, trusted_keys=[key.public_key]).requester_key_id == key.key_id


@pytest.mark.parametrize(
    ("make", "check", "error", "code"),
    [
        (
            {},
            {"trusted_keys": [PrivateKey.generate().public_key]},
            AttestationSignatureInvalidError,
            "attestation_signature_invalid",
        ),
        (
            {},
            {"expected_release_digest": "0" * 64},
            AttestationWrongSubjectError,
            "attestation_wrong_subject",
        ),
        ({}, {"expected_tier": "open"}, AttestationWrongTierError, "attestation_wrong_tier"),
        (
            {},
            {"expected_terms_digest": sha256_hex(b"new terms")},
            AttestationStaleTermsError,
            "attestation_stale_terms",
        ),
        (
            {},
            {"expected_terms_digest": None},
            AttestationStaleTermsError,
            "attestation_stale_terms",
        ),
        (
            {"accepted_terms_digest": None},
            {},
            AttestationStaleTermsError,
            "attestation_stale_terms",
        ),
        (
            {"fields": {"org": "x", "country": "FR"}},
            {},
            AttestationMissingFieldError,
            "attestation_missing_field",
        ),
        (
            {"fields": {"org": "  ", "country": "FR", "use": "r"}},
            {},
            AttestationMissingFieldError,
            "attestation_missing_field",
        ),
        (
            {},
            {"now": NOW + timedelta(hours=1, minutes=6)},
            AttestationExpiredError,
            "attestation_expired",
        ),
        (
            {},
            {"now": NOW - timedelta(minutes=6)},
            AttestationNotYetValidError,
            "attestation_not_yet_valid",
        ),
        (
            {"lifetime_seconds": 3 * 24 * 3600},
            {},
            AttestationLifetimeTooLongError,
            "attestation_lifetime_too_long",
        ),
        ({}, {"max_bytes": 100}, AttestationTooLargeError, "attestation_too_large"),
    ],
)
def test_each_failure_has_its_own_error(
    make: dict[str, Any], check: dict[str, Any], error: type[AttestationError], code: str
) -> None:
    envelope = sign_usage_attestation(make_attestation(**make), DEVELOPER)
    with pytest.raises(error) as info:
        verify(envelope, **check)
    assert info.value.code == code


def test_missing_field_names_the_field() -> None:
    envelope = sign_usage_attestation(make_attestation(fields={"org": "x", "use": "r"}), DEVELOPER)
    with pytest.raises(AttestationMissingFieldError) as info:
        verify(envelope)
    assert info.value.field == "country"


def test_skew_tolerance() -> None:
    envelope = sign_usage_attestation(make_attestation(), DEVELOPER)
    verify(envelope, now=NOW - timedelta(minutes=4))
    verify(envelope, now=NOW + timedelta(hours=1, minutes=4))


def test_signed_by_a_trusted_key_other_than_the_named_one() -> None:
    other = PrivateKey.generate("ed25519")
    payload = make_attestation().to_payload()  # names DEVELOPER
    envelope = sign_envelope(PAYLOAD_TYPE, payload, other).to_json()
    with pytest.raises(AttestationKeyMismatchError):
        verify(envelope, trusted_keys=[DEVELOPER.public_key, other.public_key])
    with pytest.raises(AttestationKeyMismatchError):
        sign_usage_attestation(make_attestation(), other)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.update(predicateType="https://tiergate.dev/release/v1"),
        lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"),
        lambda s: s["predicate"].pop("nonce"),
        lambda s: s["predicate"].update(nonce="short"),
        lambda s: s["predicate"].update(extra="x"),
        lambda s: s["predicate"].update(fields={"org": 5}),
        lambda s: s["predicate"].update(issued_at="2026-11-24 12:00:00"),
        lambda s: s["predicate"].update(expires_at=s["predicate"]["issued_at"]),
        lambda s: s["subject"].append(s["subject"][0]),
        lambda s: s["subject"][0].update(name="acme/tiny-llama"),
    ],
)
def test_malformed_predicates(edit: Any) -> None:
    statement = json.loads(make_attestation().to_payload())
    edit(statement)
    with pytest.raises(AttestationMalformedError):
        verify(signed_payload(statement))


def test_wrong_payload_type_is_malformed() -> None:
    envelope = sign_envelope("application/json", make_attestation().to_payload(), DEVELOPER)
    with pytest.raises(AttestationMalformedError):
        verify(envelope.to_json())


def test_builder_rejects_weak_nonce_and_naive_time() -> None:
    with pytest.raises(AttestationMalformedError):
        make_attestation(nonce="a" * 21)
    with pytest.raises(AttestationMalformedError):
        make_attestation(now=datetime(2026, 1, 1))


@settings(max_examples=50)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_attestation_errors(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        verify(data)


_GOOD = sign_usage_attestation(make_attestation(), DEVELOPER)


@settings(max_examples=60)
@given(st.data())
def test_byte_mutations_only_raise_attestation_errors(data: st.DataObject) -> None:
    raw = bytearray(_GOOD)
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        result = verify(bytes(raw))
    except AttestationError:
        return
    assert result == make_attestation(nonce=result.nonce)


_ATTESTATION_OBJ = json.loads(make_attestation().to_payload())


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(json_paths(_ATTESTATION_OBJ)), json_values)
def test_any_attestation_payload_shape_raises_only_attestation_errors(
    path: Any, value: Any
) -> None:
    with contextlib.suppress(AttestationError):
        verify(signed_payload(replace_at(_ATTESTATION_OBJ, path, value)))
