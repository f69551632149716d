from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.dsse import sign_envelope
from licensing.errors import ReleaseStatementError
from licensing.intoto import PAYLOAD_TYPE
from licensing.keys import PrivateKey
from licensing.sigstore_bundle import (
    compute_manifest_digest,
    sign_model_bundle,
    verify_model_bundle_manifest,
)
from licensing.statements import (
    GatedField,
    parse_release_statement,
    release_digest,
    sign_release_statement,
    verify_release_statement,
)
from tests.licensing._builders import (
    OPT_FILES,
    PUBLISHER,
    json_paths,
    make_release,
    replace_at,
)
from tests.licensing._strategies import json_values


def test_release_round_trip_and_subjects() -> None:
    release = make_release()
    envelope = sign_release_statement(release, PUBLISHER)
    verified = verify_release_statement(envelope.to_json(), [PUBLISHER.public_key])
    assert verified.release == release
    assert verified.release_digest == release_digest(envelope.payload)
    assert verified.key == PUBLISHER.public_key
    statement = release.to_statement()
    names = [s.name for s in statement.subjects]
    assert names == [
        "acme/tiny-llama@1.0.0",
        "acme/tiny-llama@1.0.0#open",
        "acme/tiny-llama@1.0.0#optimized",
    ]
    assert statement.subjects[2].sha256_hex == compute_manifest_digest(
        (p, d) for p, d, _ in OPT_FILES
    )
    assert release.approval.required_fields == ("org", "country", "use")
    assert parse_release_statement(envelope.payload) == release


def test_tier_manifest_digest_matches_the_model_bundle() -> None:
    release = make_release()
    bundle = sign_model_bundle("optimized", OPT_FILES, PUBLISHER)
    manifest = verify_model_bundle_manifest(bundle, PUBLISHER.public_key)
    assert manifest.manifest_digest == release.tier("optimized").manifest_digest


def test_release_payload_is_canonical_and_has_no_floats() -> None:
    payload = make_release().to_payload()
    statement = json.loads(payload)
    assert statement["predicate"]["fidelity"] == {
        "size_ratio": "0.31",
        "top1_agreement": "0.993100",
    }
    assert statement["predicate"]["created_at"] == "2026-11-24T12:00:00Z"
    assert (
        payload
        == json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"repo_id": "no-slash"},
        {"version": ""},
        {"license": ""},
        {"terms_digest": "xyz"},
        {"fidelity": {"top1": 0.99}},
        {"fidelity": {"top1": "1e-3"}},
        {"optimization": {"bits": 8.0}},
        {"created_at": datetime(2026, 1, 1)},  # naive
        {"tiers": ()},
        {"tokenization": {"roundtrip_rate": 0.5}},
        {"tokenization": {"Bad Key": "0.5"}},
        {"tokenization": {"text_detection": "not reliable at all"}},
    ],
)
def test_release_rejects_bad_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ReleaseStatementError):
        make_release(**changes)


def test_gated_field_validation() -> None:
    with pytest.raises(ReleaseStatementError):
        GatedField("use", "Use", type="select")
    with pytest.raises(ReleaseStatementError):
        GatedField("org", "Org", options=("a",))
    with pytest.raises(ReleaseStatementError):
        GatedField("Bad Name", "x")
    with pytest.raises(ReleaseStatementError):
        GatedField("x", "x", type="radio")  # type: ignore[arg-type]


def _resign(payload_obj: dict[str, Any], key: PrivateKey = PUBLISHER) -> bytes:
    payload = json.dumps(payload_obj).encode()
    return sign_envelope(PAYLOAD_TYPE, payload, key).to_json()


def test_release_verification_fails_closed() -> None:
    envelope = sign_release_statement(make_release(), PUBLISHER)
    with pytest.raises(ReleaseStatementError):
        verify_release_statement(envelope.to_json(), [PrivateKey.generate().public_key])
    statement = json.loads(envelope.payload)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    with pytest.raises(ReleaseStatementError, match="subjects"):
        verify_release_statement(_resign(statement), [PUBLISHER.public_key])
    statement = json.loads(envelope.payload)
    statement["predicate"]["tiers"]["open"]["files"][0]["sha256"] = "9" * 64
    with pytest.raises(ReleaseStatementError, match="manifest digest"):
        verify_release_statement(_resign(statement), [PUBLISHER.public_key])
    statement = json.loads(envelope.payload)
    statement["predicate"]["surprise"] = 1
    with pytest.raises(ReleaseStatementError, match="unknown"):
        verify_release_statement(_resign(statement), [PUBLISHER.public_key])
    with pytest.raises(ReleaseStatementError):
        verify_release_statement(b"not json", [PUBLISHER.public_key])


_RELEASE_OBJ = json.loads(make_release().to_payload())


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(json_paths(_RELEASE_OBJ)), json_values)
def test_any_release_payload_shape_raises_only_release_errors(path: Any, value: Any) -> None:
    obj = replace_at(_RELEASE_OBJ, path, value)
    envelope = sign_envelope(PAYLOAD_TYPE, json.dumps(obj).encode(), PUBLISHER).to_json()
    with contextlib.suppress(ReleaseStatementError):
        verify_release_statement(envelope, [PUBLISHER.public_key])


def test_regression_unhashable_select_option_is_our_error() -> None:
    # Found by the structural fuzzer: a list inside `options` raised TypeError from set().
    obj = replace_at(_RELEASE_OBJ, ("predicate", "approval", "fields", 2, "options", 0), [])
    envelope = sign_envelope(PAYLOAD_TYPE, json.dumps(obj).encode(), PUBLISHER).to_json()
    with pytest.raises(ReleaseStatementError):
        verify_release_statement(envelope, [PUBLISHER.public_key])


def test_tokenization_is_signed_when_present_and_optional_when_absent() -> None:
    """Issue 18: the tokenizer round trip is a predicate member of its own; a statement
    without it (every release before it existed) keeps its exact bytes and still parses."""
    plain = make_release()
    assert "tokenization" not in json.loads(plain.to_payload())["predicate"]
    assert parse_release_statement(plain.to_payload()).tokenization == {}
    record = {"roundtrip_rate": "0.218750", "text_detection": "override"}
    measured = make_release(tokenization=record)
    payload = measured.to_payload()
    assert json.loads(payload)["predicate"]["tokenization"] == record
    assert parse_release_statement(payload) == measured
    envelope = sign_release_statement(measured, PUBLISHER)
    verified = verify_release_statement(envelope.to_json(), [PUBLISHER.public_key])
    assert dict(verified.release.tokenization) == record
