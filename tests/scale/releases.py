"""Register a signed two-tier release straight in the database, with files of any size."""

from __future__ import annotations

import hashlib

from sqlalchemy.engine import Engine

from gateway.db.engine import session_scope
from gateway.db.timeutil import utcnow
from gateway.services import accounts, keys, releases
from gateway.storage.base import BlobStore
from licensing.keys import PrivateKey
from licensing.sigstore_bundle import sign_model_bundle
from licensing.statements import (
    ApprovalPolicy,
    ReleaseStatement,
    sign_release_statement,
    tier_record,
)
from tests.conftest import Account


def register_release(
    engine: Engine,
    publisher: Account,
    files: dict[str, dict[str, bytes]],
    *,
    repo_id: str,
    version: str = "1.0.0",
    blobs: BlobStore | None = None,
) -> None:
    """Register ``files`` ({"open": {...}, "optimized": {...}}); with ``blobs``, store and publish.

    Without ``blobs`` the release stays pending with every blob missing: ready for uploads.
    """
    key = PrivateKey.generate("ecdsa-p256")
    entries = {
        tier: [(name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in items.items()]
        for tier, items in files.items()
    }
    statement = ReleaseStatement(
        repo_id=repo_id,
        version=version,
        tiers=tuple(tier_record(t, entries[t], gated=t != "open") for t in entries),
        license="apache-2.0",
        terms_digest=hashlib.sha256(b"terms\n").hexdigest(),
        approval=ApprovalPolicy(),
        created_at=utcnow(),
    )
    envelope = sign_release_statement(statement, key)
    now = utcnow()
    with session_scope(engine) as session:
        principal = accounts.authenticate(session, publisher.token, now=now)
        keys.register_key(
            session, principal, pem=key.public_key.to_pem().decode(), name="scale", now=now
        )
        releases.create_release(
            session,
            principal,
            statement_envelope=envelope.to_json(),
            bundles={t: sign_model_bundle(repo_id, entries[t], key) for t in entries},
            model_card=f"# {repo_id}\n",
            terms="terms\n",
            now=now,
        )
        if blobs is None:
            return
        for items in files.values():
            for data in items.values():
                info = blobs.put_stream([data], hashlib.sha256(data).hexdigest())
                releases.record_blob(session, info.sha256, info.size, now, org_id=principal.org_id)
        releases.publish_release(session, principal, repo_id, version, now=now)
