"""A tiny two-tier release whose tiers carry a signed ``README.md``, and evaluation
attestations about it, for the card revision tests (pure and gateway)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from licensing.dsse import sign_envelope
from licensing.intoto import PAYLOAD_TYPE, Statement, Subject
from licensing.keys import PrivateKey
from licensing.sigstore_bundle import sign_model_bundle
from licensing.statements import (
    ApprovalPolicy,
    ReleaseStatement,
    release_digest,
    sign_release_statement,
    tier_record,
)
from release.card_sections import GENERATED_BEGIN, GENERATED_END
from release.evals.attestation import EVAL_PREDICATE_TYPE

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def original_card(repo_id: str, version: str) -> str:
    return (
        "---\nlicense: apache-2.0\ntags:\n- tiergate\n- tiny\n---\n\n"
        f"# {repo_id}\n\nThe publisher's own words.\n\n{GENERATED_BEGIN}\n\n"
        f"# {repo_id} {version}\n\n## Tiers\n\n| Tier |\n| --- |\n| open |\n\n{GENERATED_END}\n"
        "\n## Contact\n\nWrite to us.\n"
    )


@dataclass(frozen=True)
class SignedRelease:
    statement: ReleaseStatement
    envelope: bytes
    digest: str
    bundles: dict[str, bytes]
    card: str
    files: dict[str, dict[str, bytes]]
    key: PrivateKey


def signed_release(
    key: PrivateKey, repo_id: str = "acme/tiny", version: str = "1.0.0"
) -> SignedRelease:
    card = original_card(repo_id, version)
    files: dict[str, dict[str, bytes]] = {}
    for tier in ("open", "optimized"):
        weights = hashlib.sha256(f"{repo_id}@{version}:{tier}".encode()).digest() * 4
        files[tier] = {
            "README.md": card.encode("utf-8"),
            "config.json": b'{"model_type": "tiny"}',
            "model.safetensors": weights,
        }
    entries = {
        tier: [(name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in f.items()]
        for tier, f in files.items()
    }
    statement = ReleaseStatement(
        repo_id=repo_id,
        version=version,
        tiers=(
            tier_record("open", entries["open"], gated=False),
            tier_record("optimized", entries["optimized"], gated=True),
        ),
        license="apache-2.0",
        terms_digest=None,
        approval=ApprovalPolicy(mode="auto", grant_lifetime_seconds=3600, fields=()),
        created_at=NOW,
    )
    envelope = sign_release_statement(statement, key)
    bundles = {tier: sign_model_bundle(tier, entries[tier], key) for tier in entries}
    return SignedRelease(
        statement=statement,
        envelope=envelope.to_json(),
        digest=release_digest(envelope.payload),
        bundles=bundles,
        card=card,
        files=files,
        key=key,
    )


class Attestable(Protocol):
    statement: ReleaseStatement
    digest: str


def eval_envelope(
    key: PrivateKey,
    release: Attestable,
    *,
    tier: str = "open",
    value: str = "0.800000",
    lower: str = "0.600000",
    upper: str = "0.900000",
    total: int = 20,
    role: str = "publisher",
    task: str = "tiny-mc",
    run_id: str = "run-0000000000000001",
) -> bytes:
    """A signed eval/v1 attestation with the fields a card shows (no log evidence: the
    gateway stores attestations without replaying them; ``tiergate eval verify`` does)."""
    predicate: dict[str, Any] = {
        "runId": run_id,
        "task": {"name": task, "version": "1"},
        "model": {
            "name": f"{release.statement.release_name}",
            "repo_id": release.statement.repo_id,
            "version": release.statement.version,
            "tier": tier,
            "release_digest": release.digest,
        },
        "score": {
            "metric": "accuracy",
            "correct": 0,
            "total": total,
            "value": value,
            "interval": {"method": "wilson", "level": "0.95", "lower": lower, "upper": upper},
        },
        "result": "pass",
        "ranBy": {"role": role, "keyId": key.key_id},
    }
    statement = Statement(
        (Subject.sha256(release.statement.release_name, release.digest),),
        EVAL_PREDICATE_TYPE,
        predicate,
    )
    return sign_envelope(PAYLOAD_TYPE, statement.to_json(), key).to_json()


def payload_digest(envelope: bytes) -> str:
    from licensing.dsse import Envelope

    return hashlib.sha256(Envelope.from_json(envelope).payload).hexdigest()
