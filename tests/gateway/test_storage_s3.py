"""S3BlobStore over a real HTTP S3 endpoint (moto's server): what only a bucket can show.

The backend-agnostic contract runs in test_storage_local.py (``BACKENDS`` has "s3"); here:
multipart writes, staging, presigned URLs, shared upload state, outages, and the gateway
itself running on S3, down to a `huggingface_hub` download of a gated file.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError

pytest.importorskip("botocore", reason="the S3 backend needs boto3")

from gateway.config import Settings
from gateway.storage import BlobStore, DigestMismatch, StorageUnavailable, UploadOffsetMismatch
from gateway.storage.factory import make_blob_store
from gateway.storage.s3 import MIN_PART_SIZE, S3BlobStore
from tests.conftest import Account, LiveServer
from tests.scale.s3server import BUCKET, make_s3_store, s3_client, s3_endpoint, s3_settings_env


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store() -> S3BlobStore:
    s3: S3BlobStore = make_s3_store()
    return s3


def keys_in(store: S3BlobStore) -> list[str]:
    return sorted(item["Key"] for item in store._list(store.prefix))


def pending_multipart(store: S3BlobStore) -> list[Any]:
    listed = store.client.list_multipart_uploads(Bucket=store.bucket)
    return list(listed.get("Uploads", []))


def test_satisfies_the_protocol(store: S3BlobStore) -> None:
    typed: BlobStore = store  # checked by mypy
    assert isinstance(typed, BlobStore)
    assert store.local_path(sha256_hex(b"x")) is None


def test_large_blob_goes_multipart_straight_to_its_address(store: S3BlobStore) -> None:
    data = os.urandom(MIN_PART_SIZE * 2 + 12345)
    store.part_size = MIN_PART_SIZE
    info = store.put_stream(
        (data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)), sha256_hex(data)
    )
    assert info.size == len(data)
    head = store.client.head_object(Bucket=store.bucket, Key=store._blob_key(info.sha256))
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart object
    assert (
        b"".join(store.open_range(info.sha256, MIN_PART_SIZE - 5, MIN_PART_SIZE + 5))
        == (data[MIN_PART_SIZE - 5 : MIN_PART_SIZE + 5])
    )
    assert keys_in(store) == [store._blob_key(info.sha256)]


def test_large_blob_without_digest_is_staged_then_copied(store: S3BlobStore) -> None:
    data = os.urandom(MIN_PART_SIZE + 7)
    store.part_size = MIN_PART_SIZE
    info = store.put_stream([data])
    assert info.sha256 == sha256_hex(data)
    assert keys_in(store) == [store._blob_key(info.sha256)]  # no staging object left
    assert b"".join(store.open_range(info.sha256)) == data


def test_large_mismatch_is_never_visible_and_leaves_no_parts(store: S3BlobStore) -> None:
    data = os.urandom(MIN_PART_SIZE + 1)
    store.part_size = MIN_PART_SIZE
    wrong = sha256_hex(b"something else")
    with pytest.raises(DigestMismatch):
        store.put_stream([data], expected_sha256=wrong)
    assert not store.has(wrong)
    assert keys_in(store) == []
    assert [u for u in pending_multipart(store) if u["Key"].startswith(store.prefix)] == []


def test_presigned_url_is_short_lived_sigv4_and_serves_the_blob(store: S3BlobStore) -> None:
    info = store.put_stream([b"weights" * 100])
    url = store.presigned_url(info.sha256, expires_in=86400, filename="dir/model.safetensors")
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    # Never longer than the store's cap, however long the tiergate link still has.
    assert query["X-Amz-Expires"] == [str(store.presign_max_seconds)]
    shorter = store.presigned_url(info.sha256, expires_in=42)
    assert shorter is not None
    assert parse_qs(urlsplit(shorter).query)["X-Amz-Expires"] == ["42"]
    assert store.presigned_url(info.sha256, expires_in=0) is None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"weights" * 100
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == (
        "attachment; filename*=UTF-8''model.safetensors"
    )


def test_presigned_urls_name_the_public_endpoint() -> None:
    env = s3_settings_env()
    settings = Settings(
        **{k.removeprefix("TIERGATE_").lower(): v for k, v in env.items()},
        s3_public_endpoint_url="https://objects.example.org",
        s3_presign_max_seconds=60,
    )
    store = make_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    url = store.presigned_url(sha256_hex(b"x"), expires_in=600)
    assert url is not None
    assert url.startswith("https://objects.example.org/")
    assert "X-Amz-Expires=60" in url


def test_s3_settings_need_a_bucket() -> None:
    with pytest.raises(ValidationError, match="TIERGATE_S3_BUCKET"):
        Settings(storage_backend="s3")


def test_upload_state_is_shared_between_instances(store: S3BlobStore) -> None:
    # Two replicas = two store objects on one bucket: nothing about an upload is in memory.
    other = S3BlobStore(store.client, store.bucket, prefix=store.prefix)
    upload_id = uuid.uuid4().hex
    assert store.begin_upload(upload_id) == 0
    assert other.append_upload(upload_id, 0, b"hello ") == 6
    with pytest.raises(UploadOffsetMismatch) as caught:
        store.append_upload(upload_id, 0, b"again")
    assert caught.value.expected_offset == 6
    assert store.append_upload(upload_id, 6, b"world") == 11
    assert other.begin_upload(upload_id) == 11
    info = other.finish_upload(upload_id, sha256_hex(b"hello world"))
    assert b"".join(store.open_range(info.sha256)) == b"hello world"
    assert keys_in(store) == [store._blob_key(info.sha256)]


def test_unreachable_endpoint_is_storage_unavailable() -> None:
    from gateway.storage.factory import make_s3_client

    settings = Settings(
        storage_backend="s3",
        s3_endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        s3_bucket="x",
        s3_access_key_id="a",
        s3_secret_access_key="b",  # type: ignore[arg-type]
    )
    store = S3BlobStore(make_s3_client(settings), "x")
    store.client.meta.config.retries = {"max_attempts": 0}
    with pytest.raises(StorageUnavailable) as caught:
        store.has(sha256_hex(b"x"))
    assert "127.0.0.1" not in caught.value.message


# -- the gateway on S3 -----------------------------------------------------------------------


@pytest.fixture
def s3_app(tmp_path: Path, pg_or_sqlite_url: str) -> Iterator[Any]:
    from gateway.app import create_app

    env = s3_settings_env()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_or_sqlite_url,
        log_level="warning",
        **{k.removeprefix("TIERGATE_").lower(): v for k, v in env.items()},
    )
    app = create_app(settings)
    yield app
    app.state.gateway.engine.dispose()


@pytest.fixture
def pg_or_sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    import shutil

    target = tmp_path / "tiergate.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


def test_readyz_checks_storage(s3_app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(s3_app) as client:
        assert client.get("/readyz").status_code == 200
        blobs: S3BlobStore = s3_app.state.gateway.blobs
        blobs.bucket = "no-such-bucket-" + uuid.uuid4().hex[:8]
        refused = client.get("/readyz")
        assert refused.status_code == 503
        assert refused.json()["checks"]["storage"].startswith("unavailable")


def test_huggingface_hub_downloads_a_gated_file_from_s3(
    s3_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import hf_hub_download

    from tests.gateway.download_fixtures import grant_access
    from tests.gateway.release_fixtures import publish_test_release
    from tests.scale.conftest import make_account_in

    engine = s3_app.state.gateway.engine
    make: Callable[..., Account] = make_account_in(engine)
    publisher = make("pub", "publisher", org="acme")
    dev = make("dev")
    server = LiveServer(s3_app)
    server.start()
    try:
        release = publish_test_release(s3_app, engine, publisher, tmp_path)
        grant_access(engine, "dev", release.repo_id, release.version)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        path = hf_hub_download(
            release.repo_id,
            "model.safetensors",
            revision="optimized",
            endpoint=server.url,
            token=dev.token,
            cache_dir=tmp_path / "hf",
        )
        assert Path(path).read_bytes() == release.files["optimized"]["model.safetensors"]
        # The bytes live in the bucket only: the gateway's data dir holds no blob.
        blob_dir = Path(s3_app.state.gateway.settings.resolved_blob_dir)
        assert not any(p.is_file() for p in blob_dir.rglob("*"))
        assert s3_client().list_objects_v2(Bucket=BUCKET, Prefix=s3_app.state.gateway.blobs.prefix)
    finally:
        server.stop()
    assert s3_endpoint().startswith("http://127.0.0.1:")


def test_gated_link_redirects_to_a_short_presigned_url(s3_app: Any, tmp_path: Path) -> None:

    from tests.gateway.download_fixtures import grant_access
    from tests.gateway.release_fixtures import publish_test_release
    from tests.scale.conftest import make_account_in

    engine = s3_app.state.gateway.engine
    make: Callable[..., Account] = make_account_in(engine)
    publisher = make("pub2", "publisher", org="acme")
    dev = make("dev2")
    server = LiveServer(s3_app)
    server.start()
    try:
        release = publish_test_release(s3_app, engine, publisher, tmp_path)
        grant_access(engine, "dev2", release.repo_id, release.version)
        with httpx.Client(base_url=server.url, headers=dev.headers) as http:
            link = http.post(
                "/api/links",
                json={
                    "repo_id": release.repo_id,
                    "version": release.version,
                    "tier": "optimized",
                    "path": "model.safetensors",
                    "ttl_seconds": 120,
                },
            )
            assert link.status_code == 201, link.text
            hit = httpx.get(link.json()["url"], follow_redirects=False)
        assert hit.status_code == 302
        location = hit.headers["location"]
        assert location.startswith(s3_endpoint())
        # Never longer than the link it came from.
        assert int(parse_qs(urlsplit(location).query)["X-Amz-Expires"][0]) <= 120
        assert hit.headers["cache-control"] == "no-store"
        body = httpx.get(location).content
        assert body == release.files["optimized"]["model.safetensors"]
    finally:
        server.stop()


def test_leftover_parts_and_staging_objects_are_swept(store: S3BlobStore) -> None:
    """A replica that died between detaching an upload and deleting its parts (or between
    a staged put's copy and its delete) leaves objects no upload reaches; they go after the
    cut-off, while a live upload and the blobs stay."""
    from datetime import UTC, datetime, timedelta

    live, crashed = uuid.uuid4().hex, uuid.uuid4().hex
    for upload_id in (live, crashed):
        store.begin_upload(upload_id)
        store.append_upload(upload_id, 0, b"some bytes")
    meta = store._detach(crashed)  # ...and the process died before _remove_parts
    store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}staging/dead", Body=b"x")
    blob = store.put_stream([b"a blob " + uuid.uuid4().bytes])
    earlier = datetime.now(UTC) - timedelta(hours=1)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert store.remove_leftovers(earlier) == []
    expected = [f"uploads/{crashed}/{meta.token}", "staging/dead"]
    assert store.remove_leftovers(later, apply=False) == expected
    assert store.remove_leftovers(later) == expected
    assert store.upload_offset(live) == len(b"some bytes")
    assert store.has(blob.sha256)
    assert not [k for k in keys_in(store) if crashed in k or "/staging/" in f"/{k}"]
    assert store.remove_leftovers(later) == []


def test_another_orgs_blob_on_s3_needs_its_bytes_and_is_stored_once(
    s3_app: Any, tmp_path: Path
) -> None:
    """Issue #14.1 on the S3 backend: the digest of a stored object is not possession; the
    bytes, once sent, are verified against the stored object and not written again."""
    from fastapi.testclient import TestClient

    from tests.gateway.release_fixtures import publish_test_release, release_body_listing
    from tests.scale.conftest import make_account_in

    engine = s3_app.state.gateway.engine
    make: Callable[..., Account] = make_account_in(engine)
    acme = make("pub", "publisher", org="acme")
    beta = make("bpub", "publisher", org="beta")
    victim = publish_test_release(s3_app, engine, acme, tmp_path)
    weights = victim.files["optimized"]["model.safetensors"]
    sha = sha256_hex(weights)
    blobs: S3BlobStore = s3_app.state.gateway.blobs
    body = release_body_listing(engine, beta, "beta/copy", [("w.bin", sha, len(weights))])
    with TestClient(s3_app) as client:
        client.headers.update(beta.headers)
        assert client.post("/api/releases", json=body).json()["missing"] == [
            {"sha256": sha, "size": len(weights)}
        ]
        assert client.get(f"/api/uploads/{sha}").json()["complete"] is False
        refused = client.post("/api/releases/beta/copy/1.0.0/publish")
        assert refused.status_code == 409
        before = keys_in(blobs)
        headers = {"Upload-Offset": "0", "Content-Type": "application/octet-stream"}
        sent = client.patch(f"/api/uploads/{sha}", content=weights, headers=headers)
        assert sent.json()["complete"] is True
        assert client.post("/api/releases/beta/copy/1.0.0/publish").status_code == 200
    assert [k for k in keys_in(blobs) if "/blobs/" in f"/{k}"] == [
        k for k in before if "/blobs/" in f"/{k}"
    ]
