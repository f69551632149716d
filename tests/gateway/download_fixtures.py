"""Fixtures for download tests: a signed two-tier release built once, published per test.

Import the fixtures into a test module (``from tests.gateway.download_fixtures import *``
style, by name). Grants are written straight into the database: the tests here are about
what links and downloads do with a grant, not how one is obtained.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.conftest import Account

REPO_ID = "acme/tiny"
VERSION = "1.0.0"


@dataclass(frozen=True)
class BuiltRelease:
    out_dir: Path
    public_pem: bytes
    repo_id: str
    version: str

    def tier_files(self, tier: str) -> dict[str, bytes]:
        root = self.out_dir / tier
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }


@dataclass(frozen=True)
class PublishedRelease:
    built: BuiltRelease
    publisher: Account

    @property
    def repo_id(self) -> str:
        return self.built.repo_id

    @property
    def version(self) -> str:
        return self.built.version


def sign_release(
    model: Path,
    out: Path,
    repo_id: str,
    version: str,
    *,
    safety_policy: object = None,
    optimize: str = "int8",
    check_tokenizer: bool = True,
) -> BuiltRelease:
    """Build and sign a two-tier release of ``model`` (open; optimized int8, gated), with
    ``safety_policy`` (a ``safety.policy.SafetyPolicy``) when given. Tests about what the
    gateway does with a release, not about its artifacts, pass ``optimize="bf16"`` and
    ``check_tokenizer=False``: the build is then a few seconds instead of minutes."""
    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release

    key = PrivateKey.generate()
    build_release(
        model,
        out,
        key=key,
        options=BuildOptions(
            repo_id=repo_id,
            version=version,
            license="apache-2.0",
            terms="Be kind.\n",
            approval=ApprovalPolicy(),
            # Random-weight models sample token sequences their BPE re-merges: the publisher
            # of such a test model accepts that detection from text is unreliable.
            allow_unreliable_text_detection=True,
            safety_policy=safety_policy,  # type: ignore[arg-type]
            optimize=optimize,
            check_tokenizer=check_tokenizer,
        ),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    return BuiltRelease(out, key.public_key.to_pem(), repo_id, version)


@pytest.fixture(scope="session")
def built_release(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    """A tiny Llama released in two tiers (open, optimized int8 gated), signed. Read-only."""
    from release.testing import build_tiny_model

    root = tmp_path_factory.mktemp("download-release")
    model = build_tiny_model(root / "model", train_steps=0, hidden_size=64, num_layers=2)
    return sign_release(model, root / "out", REPO_ID, VERSION)


def publish(built: BuiltRelease, client: httpx.Client, publisher: Account) -> None:
    from release.upload import PublishError, publish_release_folder

    client.headers.update(publisher.headers)
    try:
        registered = client.post(
            "/api/keys", json={"pem": built.public_pem.decode("ascii"), "name": "release"}
        )
        assert registered.status_code in (200, 201), registered.text
        for attempt in range(5):
            try:
                publish_release_folder(built.out_dir, client=client)
                break
            except PublishError as exc:
                # The upload route commits after its response is sent (SessionDep teardown
                # runs late on FastAPI >= 0.118), so an immediate publish can miss the last
                # blob; publishing is resumable, so retrying is what a client would do.
                if exc.code != "release_incomplete" or attempt == 4:
                    raise
                time.sleep(0.2)
    finally:
        client.headers.pop("Authorization", None)


@pytest.fixture
def published_release(
    built_release: BuiltRelease, client: httpx.Client, make_account: Callable[..., Account]
) -> PublishedRelease:
    publisher = make_account("pat", "publisher", org="acme")
    publish(built_release, client, publisher)
    return PublishedRelease(built_release, publisher)


def grant_access(
    engine: Engine,
    username: str,
    repo_id: str = REPO_ID,
    version: str = VERSION,
    tier: str = "optimized",
    *,
    lifetime: timedelta = timedelta(days=30),
) -> int:
    """Give ``username`` a grant to a tier, as an approved request would; returns its id."""
    import secrets

    from sqlmodel import select

    from gateway.db.engine import session_scope
    from gateway.db.models import AccessRequest, Grant, PolicyVersion, Release, User
    from gateway.db.timeutil import utcnow

    now = utcnow()
    with session_scope(engine) as session:
        user = session.exec(select(User).where(User.username == username)).one()
        release = session.exec(
            select(Release).where(Release.repo_id == repo_id, Release.version == version)
        ).one()
        policy = session.exec(
            select(PolicyVersion).where(
                PolicyVersion.release_id == release.id, PolicyVersion.tier == tier
            )
        ).first()
        if policy is None:
            policy = PolicyVersion(
                release_id=release.id, tier=tier, version=1, policy_json=release.policy_json
            )
            session.add(policy)
            session.flush()
        request = AccessRequest(
            user_id=user.id,
            release_id=release.id,
            tier=tier,
            key_id="test",
            nonce=secrets.token_hex(16),
            attestation="{}",
            attestation_digest="0" * 64,
            fields_json=json.dumps({}),
            status="approved",
            policy_version_id=policy.id,
            attestation_expires_at=now + lifetime,
            decided_at=now,
        )
        session.add(request)
        session.flush()
        grant = Grant(
            user_id=user.id,
            release_id=release.id,
            tier=tier,
            request_id=request.id,
            policy_version_id=policy.id,
            decision="auto",
            expires_at=now + lifetime,
        )
        session.add(grant)
        session.flush()
        assert grant.id is not None
        return grant.id


def revoke_grant(engine: Engine, grant_id: int) -> None:
    from gateway.db.engine import session_scope
    from gateway.db.models import Grant
    from gateway.db.timeutil import utcnow

    with session_scope(engine) as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        grant.revoked_at = utcnow()
        session.add(grant)
