"""Resumable uploads through the publish client: possession per org, and a finish that a
crash cuts short resumes from the stored bytes (verified) instead of sending them again."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from gateway.db.engine import session_scope
from gateway.db.models import BlobHolder
from gateway.db.timeutil import utcnow
from gateway.services import accounts, keys
from gateway.storage import BlobStore
from licensing.keys import PrivateKey
from licensing.sigstore_bundle import sign_model_bundle
from licensing.statements import (
    ApprovalPolicy,
    ReleaseStatement,
    sign_release_statement,
    tier_record,
)
from release.upload import PublishError, publish_release_folder
from tests.conftest import Account

MakeAccount = Callable[..., Account]
CHUNK = 64 << 10


def write_release_folder(
    root: Path, engine: Engine, publisher: Account, repo_id: str, weights: bytes
) -> Path:
    """A signed two-tier release folder as `tiergate release build` leaves it (tiny files)."""
    key = PrivateKey.generate("ecdsa-p256")
    with session_scope(engine) as session:
        principal = accounts.authenticate(session, publisher.token, now=utcnow())
        keys.register_key(
            session, principal, pem=key.public_key.to_pem().decode(), name="k", now=utcnow()
        )
    tiers = {
        "open": {"config.json": b'{"model_type": "tiny"}', "model.safetensors": weights},
        "optimized": {"config.json": b'{"model_type": "tiny"}', "model.safetensors": weights[::2]},
    }
    entries = {
        tier: [(name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in files.items()]
        for tier, files in tiers.items()
    }
    for tier, files in tiers.items():
        for name, data in files.items():
            (root / tier).mkdir(parents=True, exist_ok=True)
            (root / tier / name).write_bytes(data)
        (root / tier / "model.sig").write_bytes(sign_model_bundle(repo_id, entries[tier], key))
    statement = ReleaseStatement(
        repo_id=repo_id,
        version="1.0.0",
        tiers=(
            tier_record("open", entries["open"], gated=False),
            tier_record("optimized", entries["optimized"], gated=True),
        ),
        license="apache-2.0",
        terms_digest=None,
        approval=ApprovalPolicy(mode="auto", grant_lifetime_seconds=3600, fields=()),
        created_at=utcnow(),
    )
    envelope = sign_release_statement(statement, key)
    (root / "release.dsse.json").write_bytes(envelope.to_json())
    return root


def _blob_sizes(folder: Path) -> dict[str, int]:
    return {
        hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and p.name not in ("model.sig", "release.dsse.json")
    }


def test_a_crash_while_finishing_resumes_without_resending_the_blob(
    app: Any,
    engine: Engine,
    client: Any,
    make_account: MakeAccount,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process dies after the last byte arrived and the store verified it, before the
    holder row is committed: the complete upload stays, and the resumed publish sends no
    byte of that blob again; the gateway verifies what it stored and keeps it."""
    publisher = make_account("pub", "publisher", org="acme")
    folder = write_release_folder(
        tmp_path / "rel", engine, publisher, "acme/tiny", os.urandom(300_000)
    )
    sizes = _blob_sizes(folder)
    last = max(sizes)  # the client uploads missing blobs in digest order: this one is last
    import gateway.services.uploads as uploads

    real_record = uploads.record_blob

    def crash_on_last(session: Any, sha256: str, *args: Any, **kw: Any) -> None:
        if sha256 == last:
            raise RuntimeError("simulated crash while finishing")
        real_record(session, sha256, *args, **kw)

    monkeypatch.setattr(uploads, "record_blob", crash_on_last)
    client.headers.update(publisher.headers)
    with pytest.raises(PublishError):
        publish_release_folder(folder, client=client, chunk_size=CHUNK)
    store: BlobStore = app.state.gateway.blobs
    (org_id,) = {h.org_id for h in _holders(engine)}
    assert store.upload_offset(f"org{org_id}-{last}") == sizes[last]  # still whole
    assert last not in {h.sha256 for h in _holders(engine)}

    monkeypatch.setattr(uploads, "record_blob", real_record)
    resumed = publish_release_folder(folder, client=client, chunk_size=CHUNK)
    assert resumed.status == "published"
    assert (resumed.uploaded_blobs, resumed.uploaded_bytes) == (1, 0)
    assert b"".join(store.open_range(last)) == next(
        p.read_bytes() for p in folder.rglob("*") if p.is_file() and _sha(p) == last
    )
    assert not any(u.upload_id.endswith(last) for u in store.iter_uploads())  # discarded


def test_a_complete_upload_never_installed_is_finished_by_an_empty_chunk(
    app: Any, engine: Engine, client: Any, make_account: MakeAccount, tmp_path: Path
) -> None:
    """A crash right after the last chunk was acknowledged: the status says offset == size,
    not complete; the client sends one empty chunk and nothing else."""
    publisher = make_account("pub", "publisher", org="acme")
    folder = write_release_folder(
        tmp_path / "rel", engine, publisher, "acme/tiny", os.urandom(200_000)
    )
    client.headers.update(publisher.headers)
    registered = client.post(
        "/api/releases",
        json={
            "statement": json.loads((folder / "release.dsse.json").read_bytes()),
            "bundles": {
                t: json.loads((folder / t / "model.sig").read_bytes())
                for t in ("open", "optimized")
            },
            "model_card": "",
            "terms": None,
        },
    )
    assert registered.status_code == 201, registered.text
    weights = (folder / "open" / "model.safetensors").read_bytes()
    sha = hashlib.sha256(weights).hexdigest()
    store: BlobStore = app.state.gateway.blobs
    status = client.get(f"/api/uploads/{sha}").json()
    assert status["offset"] == 0
    (upload_id,) = [u.upload_id for u in store.iter_uploads() if u.upload_id.endswith(sha)]
    store.append_upload(upload_id, 0, weights)  # acknowledged, then the replica died
    assert client.get(f"/api/uploads/{sha}").json() == {
        "sha256": sha,
        "size": len(weights),
        "offset": len(weights),
        "complete": False,
    }
    result = publish_release_folder(folder, client=client, chunk_size=CHUNK)
    assert result.status == "published"
    others = sum(size for digest, size in _blob_sizes(folder).items() if digest != sha)
    assert result.uploaded_bytes == others  # every blob but the weights, which were there


def test_uploads_are_per_org_and_a_wrong_final_digest_discards_the_bytes(
    app: Any, engine: Engine, client: Any, make_account: MakeAccount, tmp_path: Path
) -> None:
    """One org's half-sent bytes are not another's resume point, and bytes that hash to
    something else never become the blob (nor make anyone its holder)."""
    acme = make_account("pub", "publisher", org="acme")
    beta = make_account("bpub", "publisher", org="beta")
    weights = os.urandom(100_000)
    for account, repo in ((acme, "acme/tiny"), (beta, "beta/tiny")):
        folder = write_release_folder(tmp_path / repo, engine, account, repo, weights)
        body = {
            "statement": json.loads((folder / "release.dsse.json").read_bytes()),
            "bundles": {
                t: json.loads((folder / t / "model.sig").read_bytes())
                for t in ("open", "optimized")
            },
            "model_card": "",
            "terms": None,
        }
        assert client.post("/api/releases", json=body, headers=account.headers).status_code == 201
    sha = hashlib.sha256(weights).hexdigest()
    half = {"Upload-Offset": "0", "Content-Type": "application/octet-stream"}
    sent = client.patch(
        f"/api/uploads/{sha}", content=weights[:50_000], headers={**half, **acme.headers}
    )
    assert sent.json()["offset"] == 50_000
    assert client.get(f"/api/uploads/{sha}", headers=beta.headers).json()["offset"] == 0
    forged = weights[:-1] + bytes([weights[-1] ^ 1])
    rest = {"Upload-Offset": "50000", "Content-Type": "application/octet-stream"}
    bad = client.patch(
        f"/api/uploads/{sha}", content=forged[50_000:], headers={**rest, **acme.headers}
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "digest_mismatch"
    assert not app.state.gateway.blobs.has(sha)
    assert sha not in {h.sha256 for h in _holders(engine)}
    assert client.get(f"/api/uploads/{sha}", headers=acme.headers).json()["offset"] == 0


def _holders(engine: Engine) -> list[BlobHolder]:
    with session_scope(engine) as session:
        return list(session.exec(select(BlobHolder)).all())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_held_blob_listed_with_another_size_is_still_missing(
    app: Any, engine: Engine, client: Any, make_account: MakeAccount, tmp_path: Path
) -> None:
    """The signed size is what downloads announce: a digest the org holds but listed with a
    wrong size does not count as sent (it can never be published as signed)."""
    from tests.gateway.release_fixtures import publish_test_release, release_body_listing

    acme = make_account("pub", "publisher", org="acme")
    first = publish_test_release(app, engine, acme, tmp_path, repo_id="acme/first")
    data = first.files["open"]["model.safetensors"]
    sha = hashlib.sha256(data).hexdigest()
    body = release_body_listing(engine, acme, "acme/second", [("w.bin", sha, len(data) + 1)])
    created = client.post("/api/releases", json=body, headers=acme.headers)
    assert created.json()["missing"] == [{"sha256": sha, "size": len(data) + 1}]
    body = release_body_listing(engine, acme, "acme/third", [("w.bin", sha, len(data))])
    assert client.post("/api/releases", json=body, headers=acme.headers).json()["missing"] == []
