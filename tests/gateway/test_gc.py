"""`tiergate admin gc`: abandoned pending releases, unreferenced blobs and quiet uploads go;
published releases and everything they use stay; a blob lost behind the database's back is
asked for again instead of being published missing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from gateway.db.engine import session_scope
from gateway.db.models import Blob, LogEntry, Release, ReleaseFile, WatermarkKeyRecord
from gateway.db.timeutil import utcnow
from gateway.services import releases
from gateway.services.gc import GcCutoffs, collect_garbage
from tests.conftest import Account
from tests.gateway.release_fixtures import PublishedRelease, publish_test_release
from tests.gateway.test_health_and_errors import assert_problem

MakeAccount = Callable[..., Account]


def _future(hours: int = 1) -> GcCutoffs:
    """Cut-offs after everything the test made: all of it counts as old."""
    moment = utcnow() + timedelta(hours=hours)
    return GcCutoffs(pending_before=moment, blobs_before=moment, uploads_before=moment)


def _upload(client: Any, account: Account, data: bytes) -> Any:
    sha = hashlib.sha256(data).hexdigest()
    headers = {**account.headers, "Upload-Offset": "0"}
    return client.patch(f"/api/uploads/{sha}", content=data, headers=headers)


@pytest.fixture
def scene(
    app: Any, engine: Engine, client: Any, make_account: MakeAccount, tmp_path: Path
) -> dict[str, Any]:
    """One published release, one abandoned pending release with one of its blobs uploaded,
    and one upload session that went quiet halfway."""
    publisher = make_account("pub", "publisher", org="acme")
    live = publish_test_release(app, engine, publisher, tmp_path, repo_id="acme/live")
    stale = publish_test_release(
        app, engine, publisher, tmp_path, repo_id="acme/stale", publish=False
    )
    uploaded = stale.files["open"]["model.safetensors"]
    shared = stale.files["open"]["config.json"]  # the same bytes as acme/live's config.json
    for data in (uploaded, shared):
        assert _upload(client, publisher, data).json()["complete"] is True
    half = stale.files["optimized"]["model.safetensors"]
    store = app.state.gateway.blobs
    half_id = f"org-half-{hashlib.sha256(half).hexdigest()[:16]}"
    store.begin_upload(half_id, max_bytes=len(half))
    store.append_upload(half_id, 0, half[:3])
    return {
        "publisher": publisher,
        "live": live,
        "stale": stale,
        "orphan": hashlib.sha256(uploaded).hexdigest(),
        "half_id": half_id,
        "store": store,
    }


def _live_blobs(live: PublishedRelease) -> list[str]:
    return [hashlib.sha256(d).hexdigest() for tier in live.files.values() for d in tier.values()]


def test_dry_run_reports_and_removes_nothing(scene: dict[str, Any], engine: Engine) -> None:
    store = scene["store"]
    report = collect_garbage(engine, store, _future(), now=utcnow(), apply=False)
    assert report.releases == ["acme/stale@1.0.0"]
    assert [b.sha256 for b in report.blobs] == [scene["orphan"]]  # only the stale one's
    assert scene["half_id"] in report.uploads
    assert store.has(scene["orphan"])
    assert scene["half_id"] in {u.upload_id for u in store.iter_uploads()}
    with session_scope(engine) as session:
        assert session.exec(select(Release).where(Release.repo_id == "acme/stale")).first()


def test_apply_removes_garbage_and_keeps_what_is_published(
    scene: dict[str, Any], engine: Engine, client: Any
) -> None:
    store = scene["store"]
    report = collect_garbage(engine, store, _future(), now=utcnow(), apply=True)
    assert report.releases == ["acme/stale@1.0.0"]
    assert [b.sha256 for b in report.blobs] == [scene["orphan"]]
    assert report.skipped == []
    assert not store.has(scene["orphan"])
    assert scene["half_id"] not in {u.upload_id for u in store.iter_uploads()}
    for sha in _live_blobs(scene["live"]):
        assert store.has(sha)
    with session_scope(engine) as session:
        assert not session.exec(select(Release).where(Release.repo_id == "acme/stale")).first()
        assert not session.exec(select(Blob).where(Blob.sha256 == scene["orphan"])).first()
        shas = set(session.exec(select(ReleaseFile.sha256)).all())
        assert shas == set(_live_blobs(scene["live"]))
        actions = [e.action for e in session.exec(select(LogEntry)).all()]
    assert "release.discarded" in actions
    owner = scene["publisher"].headers
    assert client.get("/api/releases/acme/stale/1.0.0", headers=owner).status_code == 404
    assert client.get("/api/releases/acme/live/1.0.0").status_code == 200
    # Nothing left to do: a second pass finds nothing.
    again = collect_garbage(engine, store, _future(), now=utcnow(), apply=True)
    assert (again.releases, again.blobs, again.uploads) == ([], [], [])


def test_recent_things_are_kept(scene: dict[str, Any], engine: Engine) -> None:
    past = utcnow() - timedelta(hours=1)
    cutoffs = GcCutoffs(pending_before=past, blobs_before=past, uploads_before=past)
    report = collect_garbage(engine, scene["store"], cutoffs, now=utcnow(), apply=True)
    assert (report.releases, report.blobs, report.uploads) == ([], [], [])
    assert scene["store"].has(scene["orphan"])


def test_a_release_published_meanwhile_is_kept(
    scene: dict[str, Any], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The discard re-checks `pending` in its own transaction: a publish that wins stays."""
    import gateway.services.gc as gc

    original = gc._abandoned_releases

    def then_published(engine_: Engine, before: Any) -> list[Release]:
        found = original(engine_, before)
        with session_scope(engine) as session:
            row = session.exec(select(Release).where(Release.repo_id == "acme/stale")).one()
            row.status = "published"
            session.add(row)
        return found

    monkeypatch.setattr(gc, "_abandoned_releases", then_published)
    report = collect_garbage(engine, scene["store"], _future(), now=utcnow(), apply=True)
    assert report.releases == []
    assert report.skipped == ["release acme/stale@1.0.0: no longer pending"]
    assert scene["store"].has(scene["orphan"])  # still referenced: kept


def test_a_pending_release_in_use_is_kept(scene: dict[str, Any], engine: Engine) -> None:
    """Its org may already have generated from it: the watermark key row must keep its
    release (and the discard's claim is rolled back, leaving it pending)."""
    with session_scope(engine) as session:
        stale = session.exec(select(Release).where(Release.repo_id == "acme/stale")).one()
        session.add(
            WatermarkKeyRecord(key_id="k" * 16, release_id=stale.id, tier="open", config_json="{}")
        )
    report = collect_garbage(engine, scene["store"], _future(), now=utcnow(), apply=True)
    assert report.releases == []
    assert report.skipped == ["release acme/stale@1.0.0: referenced from watermark_keys"]
    with session_scope(engine) as session:
        stale = session.exec(select(Release).where(Release.repo_id == "acme/stale")).one()
        assert stale.status == "pending"
        assert session.exec(select(ReleaseFile).where(ReleaseFile.release_id == stale.id)).all()
    assert scene["store"].has(scene["orphan"])


def test_publish_asks_again_for_a_blob_lost_from_the_store(
    app: Any, engine: Engine, client: Any, make_account: MakeAccount, tmp_path: Path
) -> None:
    publisher = make_account("pub", "publisher", org="acme")
    pending = publish_test_release(app, engine, publisher, tmp_path, publish=False)
    blobs = [d for tier in pending.files.values() for d in tier.values()]
    for data in blobs:
        assert _upload(client, publisher, data).json()["complete"] is True
    lost = hashlib.sha256(blobs[0]).hexdigest()
    app.state.gateway.blobs.delete(lost)  # the row stays: only the store can tell
    url = "/api/releases/acme/tiny/1.0.0/publish"
    body = assert_problem(client.post(url, headers=publisher.headers), 409, "release_incomplete")
    assert [m["sha256"] for m in body["missing"]] == [lost]
    assert _upload(client, publisher, blobs[0]).json()["complete"] is True
    assert client.post(url, headers=publisher.headers).status_code == 200
    with session_scope(engine) as session:
        row = releases.find_release(session, "acme/tiny", "1.0.0", viewer=None)
        assert row.status == "published"


def test_cli_gc_dry_run_then_apply(scene: dict[str, Any], settings: Any, database_url: str) -> None:
    env = {
        **os.environ,
        "TIERGATE_DATA_DIR": str(settings.data_dir),
        "TIERGATE_DATABASE_URL": database_url,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "admin", "gc", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    young = run()  # defaults: 7 days for pending releases; everything here is seconds old
    assert young.returncode == 0, young.stderr
    assert "would remove: 0 pending release(s), 0 blob(s)" in young.stdout
    dry = run("--pending-older-than", "0", "--blob-grace", "0s", "--uploads-older-than", "0m")
    assert dry.returncode == 0, dry.stderr
    assert "pending release acme/stale@1.0.0" in dry.stdout
    assert "would remove: 1 pending release(s), 1 blob(s)" in dry.stdout
    assert scene["store"].has(scene["orphan"])
    applied = run("--pending-older-than", "0", "--blob-grace", "0", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "discarded pending release acme/stale@1.0.0" in applied.stdout
    assert "removed: 1 pending release(s), 1 blob(s)" in applied.stdout
    assert not scene["store"].has(scene["orphan"])
    bad = run("--blob-grace", "soon")
    assert bad.returncode == 2
    assert "is not a duration" in bad.stderr


def test_gc_removes_the_gone_directory_a_crash_while_finishing_left(
    scene: dict[str, Any], engine: Engine
) -> None:
    """Issue #14.7: `uploads/.gone-*` (an upload taken from its id, then the process died
    before deleting it) was never removed by `admin gc`. It is now, after the upload grace
    period, and the report names it."""
    store = scene["store"]
    crashed = f"org-crashed-{hashlib.sha256(b'x').hexdigest()[:16]}"
    store.begin_upload(crashed, max_bytes=10)
    store.append_upload(crashed, 0, b"0123456789")
    gone = store.root / "uploads" / ".gone-5ca1ab1e"
    os.rename(store.root / "uploads" / crashed, gone)  # the crash: no rmtree followed
    past = utcnow() - timedelta(hours=1)
    recent = collect_garbage(engine, store, GcCutoffs(past, past, past), now=utcnow(), apply=True)
    assert recent.leftovers == []
    assert gone.exists()
    dry = collect_garbage(engine, store, _future(), now=utcnow(), apply=False)
    assert dry.leftovers == ["uploads/.gone-5ca1ab1e"]
    assert gone.exists()
    applied = collect_garbage(engine, store, _future(), now=utcnow(), apply=True)
    assert applied.leftovers == ["uploads/.gone-5ca1ab1e"]
    assert not gone.exists()
    assert collect_garbage(engine, store, _future(), now=utcnow(), apply=True).leftovers == []


def test_gc_deletes_a_blobs_holders_with_it(
    scene: dict[str, Any], engine: Engine, client: Any
) -> None:
    """Possession must not outlive the bytes: once gc removed a blob, its former holder's
    next release asks for the bytes again, even after another org re-uploaded them."""
    from gateway.db.models import BlobHolder

    orphan = scene["orphan"]
    collect_garbage(engine, scene["store"], _future(), now=utcnow(), apply=True)
    with session_scope(engine) as session:
        assert not session.exec(select(BlobHolder).where(BlobHolder.sha256 == orphan)).all()
        kept = set(session.exec(select(BlobHolder.sha256)).all())
    assert kept == set(_live_blobs(scene["live"]))  # the published release's holders stay
