"""Issue #14.1: knowing a digest must never stand in for possessing the bytes.

Blobs are content-addressed and shared across orgs, and every gated file's digest and size are
public. The attack: a publisher of another org signs a release whose *open* tier lists acme's
gated weights by digest, registers it, and publishes without sending a byte; anyone could then
download acme's gated weights from the thief's open repository. Each step runs against a real
uvicorn server with plain HTTP clients.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.conftest import Account, LiveServer
from tests.gateway.release_fixtures import publish_test_release, release_body_listing

pytestmark = pytest.mark.e2e

MakeAccount = Callable[..., Account]


def test_publishing_another_orgs_gated_blob_by_digest_alone_is_refused(
    app: Any, engine: Engine, live_server: LiveServer, make_account: MakeAccount, tmp_path: Path
) -> None:
    acme = make_account("acme-pub", "publisher", org="acme")
    victim = publish_test_release(app, engine, acme, tmp_path, repo_id="acme/secret")
    gated = victim.files["optimized"]
    # What the attacker knows: the public release record lists every gated file's digest.
    with httpx.Client(base_url=live_server.url) as anonymous:
        record = anonymous.get("/api/releases/acme/secret/1.0.0").json()
    optimized = next(t for t in record["tiers"] if t["name"] == "optimized")
    entries = [(f["path"], f["sha256"], f["size"]) for f in optimized["files"]]
    weights = next(f for f in optimized["files"] if f["path"] == "model.safetensors")
    assert weights["sha256"] == hashlib.sha256(gated["model.safetensors"]).hexdigest()

    thief = make_account("beta-pub", "publisher", org="beta")
    body = release_body_listing(engine, thief, "beta/stolen", entries)
    with httpx.Client(base_url=live_server.url, headers=thief.headers) as beta:
        created = beta.post("/api/releases", json=body)
        assert created.status_code == 201, created.text
        # Every listed blob is still wanted from beta, although the bytes are stored.
        wanted = {m["sha256"] for m in created.json()["missing"]}
        assert wanted == {sha for _path, sha, _size in entries}
        # The upload endpoint does not call a stored blob complete for someone who never sent it.
        status = beta.get(f"/api/uploads/{weights['sha256']}").json()
        assert status == {
            "sha256": weights["sha256"],
            "size": weights["size"],
            "offset": 0,
            "complete": False,
        }
        # Claiming to be at the end without sending the bytes does not finish the upload.
        claimed = beta.patch(
            f"/api/uploads/{weights['sha256']}",
            content=b"",
            headers={
                "Upload-Offset": str(weights["size"]),
                "Content-Type": "application/octet-stream",
            },
        )
        assert claimed.status_code == 409, claimed.text
        assert claimed.json()["code"] == "upload_offset_mismatch"
        published = beta.post("/api/releases/beta/stolen/1.0.0/publish")
        assert published.status_code == 409, published.text
        assert published.json()["code"] == "release_incomplete"
        # Its own pending release is visible to beta: still not a way to read acme's bytes.
        preview = beta.get("/beta/stolen/resolve/1.0.0/model.safetensors")
        assert preview.content != gated["model.safetensors"]
        assert preview.status_code == 404, preview.text
    with httpx.Client(base_url=live_server.url) as anonymous:
        stolen = anonymous.get("/beta/stolen/resolve/main/model.safetensors")
    assert stolen.status_code == 404
    assert stolen.content != gated["model.safetensors"]


def test_a_second_org_that_has_the_bytes_uploads_them_and_shares_the_stored_copy(
    app: Any, engine: Engine, live_server: LiveServer, make_account: MakeAccount, tmp_path: Path
) -> None:
    """Possession is proven by sending the bytes; the store still keeps one copy."""
    acme = make_account("acme-pub", "publisher", org="acme")
    original = publish_test_release(app, engine, acme, tmp_path, repo_id="acme/shared")
    files = original.files["open"]
    entries = [(name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in files.items()]
    blobs = app.state.gateway.blobs
    before = sorted(b.sha256 for b in blobs.iter_blobs())

    other = make_account("gamma-pub", "publisher", org="gamma")
    body = release_body_listing(engine, other, "gamma/mirror", entries)
    with httpx.Client(base_url=live_server.url, headers=other.headers) as gamma:
        created = gamma.post("/api/releases", json=body).json()
        assert len(created["missing"]) == len(entries)
        for name, sha, size in entries:
            sent = gamma.patch(
                f"/api/uploads/{sha}",
                content=files[name],
                headers={"Upload-Offset": "0", "Content-Type": "application/octet-stream"},
            )
            assert sent.json() == {"sha256": sha, "size": size, "offset": size, "complete": True}
        assert gamma.post("/api/releases/gamma/mirror/1.0.0/publish").status_code == 200
    with httpx.Client(base_url=live_server.url) as anonymous:
        got = anonymous.get("/gamma/mirror/resolve/main/model.safetensors")
    assert got.status_code == 200
    assert got.content == files["model.safetensors"]
    assert sorted(b.sha256 for b in blobs.iter_blobs()) == before  # deduplicated on disk
