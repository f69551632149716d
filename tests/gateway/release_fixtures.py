"""Build and publish a tiny signed two-tier release straight through the gateway's services.

Use from a test that has the ``app`` and ``engine`` fixtures and a publisher account:

    published = publish_test_release(app, engine, publisher, tmp_path, repo_id="acme/tiny")

The open tier is public; the ``optimized`` tier is gated by ``approval`` (auto by default).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from gateway.db.engine import session_scope
from gateway.db.timeutil import utcnow
from gateway.services import accounts, keys, releases
from licensing.keys import PrivateKey
from licensing.sigstore_bundle import sign_model_bundle
from licensing.statements import (
    ApprovalPolicy,
    GatedField,
    ReleaseStatement,
    release_digest,
    sign_release_statement,
    tier_record,
)
from tests.conftest import Account

TERMS_TEXT = "Use this model responsibly. No surveillance.\n"
DEFAULT_FIELDS = (
    GatedField("org", "Organisation"),
    GatedField("use", "Intended use", type="select", options=("research", "product")),
    GatedField("country", "Country", type="country"),
    GatedField("agree", "I accept the terms", type="checkbox"),
)


@dataclass(frozen=True)
class PublishedRelease:
    repo_id: str
    version: str
    release_digest: str
    terms_digest: str
    publisher_key: PrivateKey
    files: dict[str, dict[str, bytes]]


def _tier_files(root: Path, tier: str, seed: str) -> dict[str, bytes]:
    files = {
        "config.json": b'{"model_type": "tiny"}',
        "model.safetensors": hashlib.sha256(f"{seed}:{tier}".encode()).digest() * 4,
    }
    for name, data in files.items():
        path = root / tier / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def publish_test_release(
    app: Any,
    engine: Engine,
    publisher: Account,
    tmp_path: Path,
    *,
    repo_id: str = "acme/tiny",
    version: str = "1.0.0",
    mode: str = "auto",
    fields: tuple[GatedField, ...] = DEFAULT_FIELDS,
    grant_lifetime_seconds: int = 3600,
    terms: str = TERMS_TEXT,
    key: PrivateKey | None = None,
    publish: bool = True,
) -> PublishedRelease:
    """Sign, register, upload and publish a release; returns what attesters need.

    ``publish=False`` stops after registering: the release stays pending, its blobs unsent.
    """
    key = key or PrivateKey.generate("ecdsa-p256")
    root = tmp_path / "releases" / repo_id.replace("/", "__") / version
    files = {
        tier: _tier_files(root, tier, f"{repo_id}@{version}") for tier in ("open", "optimized")
    }
    entries = {
        tier: [
            (name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in tier_files.items()
        ]
        for tier, tier_files in files.items()
    }
    terms_digest = hashlib.sha256(terms.encode("utf-8")).hexdigest()
    now = utcnow()
    statement = ReleaseStatement(
        repo_id=repo_id,
        version=version,
        tiers=(
            tier_record("open", entries["open"], gated=False),
            tier_record("optimized", entries["optimized"], gated=True),
        ),
        license="apache-2.0",
        terms_digest=terms_digest,
        approval=ApprovalPolicy(
            mode=mode,  # type: ignore[arg-type]
            grant_lifetime_seconds=grant_lifetime_seconds,
            fields=fields,
        ),
        created_at=now,
    )
    envelope = sign_release_statement(statement, key)
    bundles = {tier: sign_model_bundle(repo_id, entries[tier], key) for tier in entries}
    blobs = app.state.gateway.blobs
    with session_scope(engine) as session:
        principal = accounts.authenticate(session, publisher.token, now=now)
        keys.register_key(
            session, principal, pem=key.public_key.to_pem().decode(), name="release", now=now
        )
        releases.create_release(
            session,
            principal,
            statement_envelope=envelope.to_json(),
            bundles=bundles,
            model_card=f"# {repo_id}\n",
            terms=terms,
            now=now,
        )
        if publish:
            for tier_files in files.values():
                for data in tier_files.values():
                    info = blobs.put_stream([data], hashlib.sha256(data).hexdigest())
                    releases.record_blob(
                        session, info.sha256, info.size, now, org_id=principal.org_id
                    )
            releases.publish_release(session, principal, repo_id, version, now=now)
    return PublishedRelease(
        repo_id=repo_id,
        version=version,
        release_digest=release_digest(envelope.payload),
        terms_digest=terms_digest,
        publisher_key=key,
        files=files,
    )


def release_body_listing(
    engine: Engine, publisher: Account, repo_id: str, entries: list[tuple[str, str, int]]
) -> dict[str, Any]:
    """The `POST /api/releases` body of a correctly signed one-tier open release of ``entries``
    ((path, sha256, size); the files need not exist), signed by a key registered for the
    publisher's org: what a publisher who knows only digests can build."""
    key = PrivateKey.generate("ecdsa-p256")
    with session_scope(engine) as session:
        principal = accounts.authenticate(session, publisher.token, now=utcnow())
        keys.register_key(
            session, principal, pem=key.public_key.to_pem().decode(), name="k", now=utcnow()
        )
    statement = ReleaseStatement(
        repo_id=repo_id,
        version="1.0.0",
        tiers=(tier_record("open", entries, gated=False),),
        license="apache-2.0",
        terms_digest=None,
        approval=ApprovalPolicy(mode="auto", grant_lifetime_seconds=3600, fields=()),
        created_at=utcnow(),
    )
    envelope = sign_release_statement(statement, key)
    return {
        "statement": json.loads(envelope.to_json()),
        "bundles": {"open": json.loads(sign_model_bundle(repo_id, entries, key))},
        "model_card": f"# {repo_id}\n",
        "terms": None,
    }
