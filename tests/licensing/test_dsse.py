from __future__ import annotations

import base64
import contextlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.dsse import Envelope, Signature, pae, sign_envelope, verify_envelope
from licensing.errors import (
    EnvelopeFormatError,
    EnvelopeTooLargeError,
    LicensingError,
    SignatureVerificationError,
)
from licensing.keys import PrivateKey, PublicKey

# The example of secure-systems-lab/dsse protocol.md (v1.0.0, "Test Vectors").
SPEC_TYPE = "http://example.com/HelloWorld"
SPEC_BODY = b"hello world"
SPEC_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
SPEC_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
SPEC_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
SPEC_SIG = (
    "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
)
SPEC_ENVELOPE = (
    b'{"payload": "aGVsbG8gd29ybGQ=",\n "payloadType": "http://example.com/HelloWorld",\n'
    b' "signatures": [{"sig": "' + SPEC_SIG.encode() + b'"}]}'
)

KEYS = {kind: PrivateKey.generate(kind) for kind in ("ecdsa-p256", "ed25519")}


def test_pae_golden_vector() -> None:
    assert pae(SPEC_TYPE, SPEC_BODY) == SPEC_PAE


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("é", b"\x00") == b"DSSEv1 2 \xc3\xa9 1 \x00"
    assert pae("", b"") == b"DSSEv1 0  0 "


def _spec_public_key() -> PublicKey:
    numbers = ec.EllipticCurvePublicNumbers(SPEC_X, SPEC_Y, ec.SECP256R1())
    return PublicKey.from_cryptography(numbers.public_key())


def test_spec_envelope_parses_and_its_signature_verifies() -> None:
    envelope = Envelope.from_json(SPEC_ENVELOPE)
    assert envelope.payload_type == SPEC_TYPE
    assert envelope.payload == SPEC_BODY
    raw = envelope.signatures[0].sig
    assert len(raw) == 64  # raw r || s in the spec; we sign and verify DER
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    spec_key = _spec_public_key()
    assert spec_key.verify(der, SPEC_PAE)
    der_envelope = Envelope(SPEC_TYPE, SPEC_BODY, (Signature(der),))
    assert verify_envelope(der_envelope, [spec_key]).key == spec_key


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_sign_verify_round_trip(kind: str) -> None:
    key = KEYS[kind]
    other = PrivateKey.generate()
    envelope = sign_envelope("application/x-test", b"payload", key)
    assert envelope.signatures[0].keyid == key.key_id
    parsed = Envelope.from_json(envelope.to_json())
    assert parsed == envelope
    verified = verify_envelope(parsed, [other.public_key, key.public_key])
    assert verified.key == key.public_key
    assert verified.payload == b"payload"
    with pytest.raises(SignatureVerificationError):
        verify_envelope(parsed, [other.public_key])
    with pytest.raises(SignatureVerificationError):
        verify_envelope(parsed, [])


def test_keyid_is_only_a_hint() -> None:
    key = KEYS["ecdsa-p256"]
    envelope = sign_envelope("t", b"p", key, keyid="somebody-else")
    assert verify_envelope(envelope, [key.public_key]).key == key.public_key


def test_accepts_urlsafe_and_unpadded_base64() -> None:
    envelope = sign_envelope("t", b"\xfb\xff\xfe", KEYS["ed25519"])
    obj = envelope.to_dict()
    obj["payload"] = base64.urlsafe_b64encode(envelope.payload).decode().rstrip("=")
    parsed = Envelope.from_json(json.dumps(obj).encode())
    assert parsed.payload == envelope.payload


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"payload": "", "payloadType": "t"},
        {"payload": "!!", "payloadType": "t", "signatures": [{"sig": "AA=="}]},
        {"payload": "", "payloadType": "", "signatures": [{"sig": "AA=="}]},
        {"payload": "", "payloadType": "t", "signatures": []},
        {"payload": "", "payloadType": "t", "signatures": [{"sig": ""}]},
        {"payload": "", "payloadType": "t", "signatures": [{"sig": "AA==", "keyid": 3}]},
        {"payload": "", "payloadType": "t", "signatures": [{"sig": "AA=="}] * 17},
        {"payload": "A", "payloadType": "t", "signatures": [{"sig": "AA=="}]},
        {"payload": "", "payloadType": "t", "signatures": [{"sig": "AA=="}], "x": 1},
        {"payload": 1, "payloadType": "t", "signatures": [{"sig": "AA=="}]},
    ],
)
def test_malformed_envelopes(obj: object) -> None:
    with pytest.raises(EnvelopeFormatError):
        Envelope.from_json(json.dumps(obj).encode())


def test_size_bound() -> None:
    data = sign_envelope("t", b"x" * 1000, KEYS["ed25519"]).to_json()
    with pytest.raises(EnvelopeTooLargeError):
        Envelope.from_json(data, max_bytes=100)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(LicensingError):
        Envelope.from_json(data)


_SIGNED = {
    kind: sign_envelope("application/x-test", b"some payload", key) for kind, key in KEYS.items()
}


@settings(max_examples=60)
@given(
    kind=st.sampled_from(sorted(KEYS)),
    field=st.sampled_from(["payload", "type", "sig"]),
    index=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_mutation_fails_verification(kind: str, field: str, index: int, flip: int) -> None:
    envelope = _SIGNED[kind]
    public = KEYS[kind].public_key

    def mutate(data: bytes) -> bytes:
        position = index % (len(data) + 1)
        if position == len(data):
            return data + bytes([flip])
        return data[:position] + bytes([data[position] ^ flip]) + data[position + 1 :]

    if field == "payload":
        changed = Envelope(envelope.payload_type, mutate(envelope.payload), envelope.signatures)
    elif field == "type":
        new_type = mutate(envelope.payload_type.encode()).decode("latin-1")
        changed = Envelope(new_type, envelope.payload, envelope.signatures)
    else:
        sig = envelope.signatures[0]
        changed = Envelope(
            envelope.payload_type, envelope.payload, (Signature(mutate(sig.sig), sig.keyid),)
        )
    with pytest.raises(SignatureVerificationError):
        verify_envelope(changed, [public])


@settings(max_examples=40)
@given(st.data())
def test_json_level_mutation_fails_closed(data: st.DataObject) -> None:
    # Any edit of the serialized envelope either breaks parsing or verification, or leaves the
    # signed content unchanged (e.g. whitespace, or base64 padding variants).
    key = KEYS["ecdsa-p256"]
    original = _SIGNED["ecdsa-p256"]
    raw = bytearray(original.to_json())
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        parsed = Envelope.from_json(bytes(raw))
        verified = verify_envelope(parsed, [key.public_key])
    except LicensingError:
        return
    assert verified.payload == original.payload
    assert verified.payload_type == original.payload_type
