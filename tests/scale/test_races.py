"""Races between real gateway processes on one PostgreSQL: nothing shared lives in memory.

Three `tiergate serve` processes on one database and keys (started once for the module, each
test using objects of its own), and requests for the same objects sent to all of them at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.config import Settings
from gateway.db.models import Blob, LogCheckpoint, LogEntry
from gateway.storage.base import BlobStore
from gateway.storage.local import LocalBlobStore
from licensing.keys import PrivateKey
from licensing.tlog.checkpoint import parse_checkpoint
from licensing.tlog.merkle import leaf_hash, root_from_leaf_hashes
from tests.conftest import _truncate_all
from tests.scale.conftest import MakeAccount, blob_holder, make_account_in
from tests.scale.releases import register_release
from tests.scale.replicas import running_replicas

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.e2e]


def fan_out(count: int, work: Any, workers: int = 16) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, range(count)))


def checkpoint_body(note: str) -> Any:
    """The parsed checkpoint of a signed note (its text before the signature lines)."""
    return parse_checkpoint(note.split("\n\n", 1)[0] + "\n")


def wait_for_checkpoint(url: str, size: int, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        note = httpx.get(f"{url}/log/checkpoint", timeout=5).text
        if checkpoint_body(note).size >= size or time.monotonic() > deadline:
            return note
        time.sleep(0.1)


@dataclass(frozen=True)
class Cluster:
    urls: list[str]
    engine: Engine
    data_dir: Path
    database_url: str
    make_account: MakeAccount


@pytest.fixture(scope="module")
def cluster(pg_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from gateway.db.engine import make_engine

    _truncate_all(pg_database_url)
    data_dir = tmp_path_factory.mktemp("cluster") / "shared"
    data_dir.mkdir()
    engine = make_engine(pg_database_url)
    try:
        # An hour-long window, so a race never straddles two windows (fixed windows reset).
        env = {"TIERGATE_RATE_LIMIT_WINDOW_SECONDS": "3600"}
        with running_replicas(
            3, data_dir=data_dir, database_url=pg_database_url, env=env
        ) as replicas:
            yield Cluster(replicas.urls, engine, data_dir, pg_database_url, make_account_in(engine))
    finally:
        engine.dispose()


def test_log_appends_from_three_replicas_are_dense_and_checkpoints_agree(
    cluster: Cluster,
) -> None:
    users = [cluster.make_account(f"logger{i}") for i in range(3)]
    pems = [PrivateKey.generate("ed25519").public_key.to_pem().decode() for _ in range(60)]
    urls = cluster.urls

    def register(i: int) -> int:
        who = users[i % len(users)]
        response = httpx.post(
            f"{urls[i % len(urls)]}/api/keys",
            json={"pem": pems[i], "name": f"k{i}"},
            headers=who.headers,
            timeout=30,
        )
        return response.status_code

    assert Counter(fan_out(len(pems), register)) == {201: len(pems)}
    # gateway.deps.get_session commits in a yield dependency of FastAPI's default "request"
    # scope, i.e. after the response is sent: a 201 can reach the client a moment before its
    # transaction commits (reported; fix: Depends(get_session, scope="function")). Until
    # then, give the last commits a moment before reading.
    deadline = time.monotonic() + 10
    while True:
        with Session(cluster.engine) as session:
            entries = list(session.exec(select(LogEntry).order_by(LogEntry.idx)))
        mine = [e for e in entries if '"name":"logger' in e.entry]
        if len(mine) >= len(pems) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    size = len(entries)
    assert [e.idx for e in entries] == list(range(size))  # no gaps, no duplicates
    assert sum(e.action == "key.registered" for e in mine) == len(pems)
    # Every replica runs the integration loop; each serves the same, complete checkpoint.
    notes = {wait_for_checkpoint(url, size) for url in urls}
    assert len(notes) == 1
    latest = checkpoint_body(notes.pop())
    assert latest.size >= size
    with Session(cluster.engine) as session:
        entries = list(session.exec(select(LogEntry).order_by(LogEntry.idx)))
        signed = list(session.exec(select(LogCheckpoint).order_by(LogCheckpoint.size)))
    leaves = [leaf_hash(e.entry.encode("utf-8")) for e in entries]
    assert signed, "no checkpoint was signed"
    for checkpoint in signed:
        # Whichever replica signed it, each checkpoint commits to a prefix of the one log.
        parsed = checkpoint_body(checkpoint.note)
        assert parsed.size == checkpoint.size
        assert parsed.root_hash == root_from_leaf_hashes(leaves[: checkpoint.size])


def upload_race(urls: list[str], publisher: Any, sha: str, data: bytes) -> None:
    """Six clients over the replicas, each resuming wherever the upload is until complete."""
    chunk = 256 << 10

    def upload(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], headers=publisher.headers, timeout=60) as c:
            status = c.get(f"/api/uploads/{sha}").json()
            offset = status["offset"]
            while not status["complete"]:
                response = c.patch(
                    f"/api/uploads/{sha}",
                    content=data[offset : offset + chunk],
                    headers={
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/octet-stream",
                    },
                )
                if response.status_code == 409 and "upload-offset" in response.headers:
                    offset = int(response.headers["upload-offset"])  # another client got there
                    continue
                if response.status_code in (404, 409):
                    # 404: finished by another client meanwhile. 409 without an offset: a
                    # write that raced another replica's was refused by a constraint (a
                    # conflict, never a 503 since issue #14): read where the upload is.
                    status = c.get(f"/api/uploads/{sha}").json()
                    offset = status["offset"]
                    continue
                assert response.status_code == 200, response.text
                status = response.json()
                offset = status["offset"]

    fan_out(6, upload, workers=6)
    final = httpx.get(f"{urls[0]}/api/uploads/{sha}", headers=publisher.headers).json()
    assert final["complete"] is True


def check_stored_once(blobs: BlobStore, engine: Engine, sha: str, data: bytes) -> None:
    assert [b.sha256 for b in blobs.iter_blobs() if b.sha256 == sha] == [sha]
    assert b"".join(blobs.open_range(sha)) == data
    with Session(engine) as session:
        assert len(list(session.exec(select(Blob).where(Blob.sha256 == sha)))) == 1


def pending_release(engine: Engine, make: MakeAccount, org: str) -> tuple[Any, str, bytes]:
    publisher = make(f"pub-{org}", "publisher", org=org)
    weights = os.urandom(3 << 20)
    files = {"open": {"config.json": b"{}"}, "optimized": {"model.safetensors": weights}}
    register_release(engine, publisher, files, repo_id=f"{org}/race")
    return publisher, hashlib.sha256(weights).hexdigest(), weights


def test_concurrent_chunked_uploads_of_one_blob_store_it_once(cluster: Cluster) -> None:
    publisher, sha, weights = pending_release(cluster.engine, cluster.make_account, "uplocal")
    upload_race(cluster.urls, publisher, sha, weights)
    check_stored_once(LocalBlobStore(cluster.data_dir / "blobs"), cluster.engine, sha, weights)


def test_concurrent_chunked_uploads_to_s3_store_it_once(cluster: Cluster, tmp_path: Path) -> None:
    from tests.scale.s3server import BUCKET, make_s3_store, s3_settings_env

    env = s3_settings_env()
    blobs = make_s3_store(env["TIERGATE_S3_PREFIX"], bucket=BUCKET)
    publisher, sha, weights = pending_release(cluster.engine, cluster.make_account, "ups3")
    data_dir = tmp_path / "s3-replicas"
    data_dir.mkdir()
    shutil.copytree(cluster.data_dir / "keys", data_dir / "keys")
    with running_replicas(
        2, data_dir=data_dir, database_url=cluster.database_url, env=env
    ) as replicas:
        upload_race(replicas.urls, publisher, sha, weights)
    check_stored_once(blobs, cluster.engine, sha, weights)


def test_a_nonce_is_accepted_once_across_replicas(cluster: Cluster, tmp_path: Path) -> None:
    from tests.gateway.release_fixtures import publish_test_release
    from tests.gateway.test_access import attest

    publisher = cluster.make_account("pub-nonce", "publisher", org="nonce")
    dev = cluster.make_account("dev-nonce")
    release = publish_test_release(
        blob_holder(LocalBlobStore(cluster.data_dir / "blobs")),
        cluster.engine,
        publisher,
        tmp_path,
        repo_id="nonce/tiny",
    )
    key = PrivateKey.generate("ed25519")
    urls = cluster.urls
    registered = httpx.post(
        f"{urls[0]}/api/keys", json={"pem": key.public_key.to_pem().decode()}, headers=dev.headers
    )
    assert registered.status_code == 201, registered.text
    envelope = attest(key, release, "dev-nonce")
    body = {"repo_id": release.repo_id, "version": release.version, "attestation": envelope}

    def submit(i: int) -> str:
        response = httpx.post(
            f"{urls[i % len(urls)]}/api/access/requests", json=body, headers=dev.headers, timeout=30
        )
        return "accepted" if response.status_code == 201 else response.json()["code"]

    assert Counter(fan_out(12, submit)) == {"accepted": 1, "attestation_replayed": 11}


def test_concurrent_spends_of_one_link_never_exceed_its_budget(
    cluster: Cluster, tmp_path: Path
) -> None:
    from tests.gateway.download_fixtures import grant_access
    from tests.gateway.release_fixtures import publish_test_release

    publisher = cluster.make_account("pub-link", "publisher", org="linkorg")
    dev = cluster.make_account("dev-link")
    release = publish_test_release(
        blob_holder(LocalBlobStore(cluster.data_dir / "blobs")),
        cluster.engine,
        publisher,
        tmp_path,
        repo_id="linkorg/tiny",
    )
    grant_access(cluster.engine, "dev-link", release.repo_id, release.version)
    weights = release.files["optimized"]["model.safetensors"]
    urls = cluster.urls
    link = httpx.post(
        f"{urls[0]}/api/links",
        json={"repo_id": release.repo_id, "tier": "optimized", "path": "model.safetensors"},
        headers=dev.headers,
    )
    assert link.status_code == 201, link.text
    issued = link.json()
    path = "/" + issued["url"].split("://", 1)[1].split("/", 1)[1]

    def spend(i: int) -> int:
        response = httpx.get(f"{urls[i % len(urls)]}{path}", timeout=30)
        if response.status_code == 200:
            assert response.content == weights
            return len(response.content)
        assert response.status_code in (403, 410, 429), response.text
        return 0

    served = fan_out(12, spend)
    # Exactly the budget: never more, however the requests were spread over the replicas.
    assert sum(served) == issued["byte_budget"]


def test_a_rate_limit_holds_across_replicas(cluster: Cluster) -> None:
    limit = Settings().rate_limit_tokens_per_account
    minter = cluster.make_account("minter")
    urls = cluster.urls

    def mint(i: int) -> int:
        response = httpx.post(
            f"{urls[i % len(urls)]}/api/tokens",
            json={"name": f"t{i}"},
            headers=minter.headers,
            timeout=30,
        )
        return response.status_code

    # The counters live in PostgreSQL: three replicas together allow exactly `limit`.
    assert Counter(fan_out(limit + 15, mint)) == {201: limit, 429: 15}
