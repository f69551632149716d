"""Builders shared by the release statement and usage attestation tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from licensing.canonical import sha256_hex
from licensing.dsse import sign_envelope
from licensing.intoto import PAYLOAD_TYPE
from licensing.keys import PrivateKey
from licensing.statements import (
    ApprovalPolicy,
    GatedField,
    ReleaseStatement,
    UsageAttestation,
    build_usage_attestation,
    format_decimal,
    release_digest,
    sign_release_statement,
    tier_record,
    verify_usage_attestation,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
TERMS = sha256_hex(b"Be nice.")
PUBLISHER = PrivateKey.generate("ecdsa-p256")
DEVELOPER = PrivateKey.generate("ed25519")
OPEN_FILES = [("config.json", "1" * 64, 10), ("model.safetensors", "2" * 64, 1000)]
OPT_FILES = [("config.json", "1" * 64, 10), ("int8/model.safetensors", "3" * 64, 300)]


def make_release(**changes: Any) -> ReleaseStatement:
    values: dict[str, Any] = {
        "repo_id": "acme/tiny-llama",
        "version": "1.0.0",
        "tiers": (
            tier_record("open", OPEN_FILES, gated=False),
            tier_record("optimized", OPT_FILES, gated=True),
        ),
        "license": "apache-2.0",
        "terms_digest": TERMS,
        "approval": ApprovalPolicy(
            mode="auto",
            grant_lifetime_seconds=7 * 24 * 3600,
            fields=(
                GatedField("org", "Organisation"),
                GatedField("country", "Country", type="country"),
                GatedField("use", "Intended use", type="select", options=("research", "product")),
                GatedField("newsletter", "Newsletter", type="checkbox", required=False),
            ),
        ),
        "created_at": NOW,
        "optimization": {"method": "int8", "group_size": 128},
        "fidelity": {"top1_agreement": format_decimal(0.9931), "size_ratio": "0.31"},
    }
    values.update(changes)
    return ReleaseStatement(**values)


RELEASE_ENVELOPE = sign_release_statement(make_release(), PUBLISHER)
RELEASE_DIGEST = release_digest(RELEASE_ENVELOPE.payload)
REQUIRED = ("org", "country", "use")


def make_attestation(**changes: Any) -> UsageAttestation:
    values: dict[str, Any] = {
        "repo_id": "acme/tiny-llama",
        "version": "1.0.0",
        "release_digest": RELEASE_DIGEST,
        "tier": "optimized",
        "accepted_terms_digest": TERMS,
        "fields": {"org": "Example Labs", "country": "FR", "use": "research"},
        "requester_account": "dev@example.com",
        "requester_key_id": DEVELOPER.key_id,
        "now": NOW,
    }
    values.update(changes)
    return build_usage_attestation(**values)


def verify(envelope: bytes, **changes: Any) -> UsageAttestation:
    values: dict[str, Any] = {
        "trusted_keys": [DEVELOPER.public_key],
        "expected_release_digest": RELEASE_DIGEST,
        "expected_terms_digest": TERMS,
        "required_fields": REQUIRED,
        "now": NOW + timedelta(seconds=30),
        "expected_tier": "optimized",
    }
    values.update(changes)
    return verify_usage_attestation(envelope, **values)


def signed_payload(obj: dict[str, Any]) -> bytes:
    return sign_envelope(PAYLOAD_TYPE, json.dumps(obj).encode(), DEVELOPER).to_json()


def json_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += json_paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += json_paths(value, (*prefix, index))
    return found


def replace_at(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(obj))
    cursor = copy
    for part in path[:-1]:
        cursor = cursor[part]
    cursor[path[-1]] = value
    return copy
