"""LocalBlobStore: the shared BlobStore contract plus what only a local directory can show."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import Conflict, GatewayError, NotFound, ServiceUnavailable
from gateway.storage import (
    BlobNotFound,
    BlobStore,
    DigestMismatch,
    InvalidDigest,
    InvalidRange,
    LocalBlobStore,
    StorageError,
    StorageUnavailable,
    UploadOffsetMismatch,
)
from tests.gateway.storage_contract import BAD_DIGESTS, BlobStoreContract, read_all, sha256_hex


def _s3_store(_tmp_path: Path) -> BlobStore:
    # A real HTTP S3 endpoint (moto's server), one fresh key prefix per test; skips if absent.
    from tests.scale.s3server import make_s3_store

    store: BlobStore = make_s3_store()
    return store


# One entry per backend; each runs the whole contract.
BACKENDS: dict[str, Callable[[Path], BlobStore]] = {"local": LocalBlobStore, "s3": _s3_store}


@pytest.fixture(params=sorted(BACKENDS))
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return BACKENDS[request.param](tmp_path / "store")


class TestBlobStoreContract(BlobStoreContract):
    """Every backend in BACKENDS against the backend-agnostic contract."""


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")


def leftovers(store: LocalBlobStore) -> list[str]:
    """Everything under tmp/ and uploads/: must be empty once no upload is in progress."""
    return sorted(
        str(p.relative_to(store.root))
        for p in [*(store.root / "tmp").rglob("*"), *(store.root / "uploads").rglob("*")]
    )


def test_satisfies_the_protocol(store: LocalBlobStore) -> None:
    typed: BlobStore = store  # checked by mypy
    assert isinstance(typed, BlobStore)


def test_layout(store: LocalBlobStore) -> None:
    info = store.put_stream([b"layout"])
    h = info.sha256
    expected = store.root / "blobs" / "sha256" / h[:2] / h[2:4] / h
    assert store.local_path(h) == expected
    assert expected.read_bytes() == b"layout"
    assert leftovers(store) == []


def test_local_path_of_missing_blob(store: LocalBlobStore) -> None:
    with pytest.raises(BlobNotFound):
        store.local_path(sha256_hex(b"absent"))


def test_refusals_leave_no_files(store: LocalBlobStore) -> None:
    with pytest.raises(DigestMismatch):
        store.put_stream([b"a", b"b"], expected_sha256=sha256_hex(b"c"))
    with pytest.raises(StorageError):
        store.put_stream([b"abc"], max_bytes=2)
    store.begin_upload("u1")
    store.append_upload("u1", 0, b"abc")
    with pytest.raises(DigestMismatch):
        store.finish_upload("u1", sha256_hex(b"xyz"))
    store.begin_upload("u2")
    store.abort_upload("u2")
    assert leftovers(store) == []
    assert list(store.iter_blobs()) == []


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_path_tricks_never_reach_the_filesystem(
    store: LocalBlobStore, tmp_path: Path, bad: str
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    for call in (store.delete, store.has, store.local_path):
        with pytest.raises(InvalidDigest):
            call(bad)
    with pytest.raises(InvalidDigest):
        store.delete(str(victim))
    assert victim.read_bytes() == b"keep me"


def test_crashed_append_tail_is_discarded(store: LocalBlobStore) -> None:
    # An append that wrote bytes but died before its sidecar update: the tail was never
    # acknowledged, so the next append at the committed offset overwrites it.
    store.begin_upload("crash")
    store.append_upload("crash", 0, b"good")
    with open(store.root / "uploads" / "crash" / "data", "ab") as f:
        f.write(b"GARBAGE-NEVER-ACKED")
    assert store.upload_offset("crash") == 4
    store.append_upload("crash", 4, b"!")
    info = store.finish_upload("crash", sha256_hex(b"good!"))
    assert read_all(store, info.sha256) == b"good!"


def test_stray_files_are_not_blobs(store: LocalBlobStore) -> None:
    info = store.put_stream([b"real"])
    fanout = store.root / "blobs" / "sha256" / info.sha256[:2] / info.sha256[2:4]
    (fanout / "notes.txt").write_text("x")
    (fanout / sha256_hex(b"misplaced")).write_bytes(b"misplaced")
    assert list(store.iter_blobs()) == [info]


def test_reader_closes_its_file(store: LocalBlobStore) -> None:
    info = store.put_stream([b"0123456789"])
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    reader = store.open_range(info.sha256, chunk_size=3)
    assert next(reader) == b"012"
    reader.close()  # type: ignore[attr-defined]
    assert list(reader) == []
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_open_blob_survives_delete(store: LocalBlobStore) -> None:
    info = store.put_stream([b"streaming while deleted"])
    reader = store.open_range(info.sha256, chunk_size=4)
    store.delete(info.sha256)
    assert b"".join(reader) == b"streaming while deleted"


def test_unwritable_root_is_a_clear_error(tmp_path: Path) -> None:
    # A regular file where the root should be fails for root users too, unlike chmod.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for root in (blocker, blocker / "below"):
        with pytest.raises(StorageUnavailable, match="not a writable directory"):
            LocalBlobStore(root)


def test_os_errors_become_storage_unavailable(store: LocalBlobStore) -> None:
    (store.root / "tmp").rmdir()
    with pytest.raises(StorageUnavailable) as caught:
        store.put_stream([b"x"])
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    assert str(store.root) not in caught.value.message  # no paths in client-facing text


def test_missing_source_file_is_the_callers_oserror(store: LocalBlobStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "nope.bin")


def test_errors_carry_http_details() -> None:
    mismatch = UploadOffsetMismatch("u", expected_offset=7, offset=3)
    assert isinstance(mismatch, Conflict)
    assert (mismatch.code, mismatch.status) == ("upload_offset_mismatch", 409)
    assert mismatch.headers["Upload-Offset"] == "7"
    bad_range = InvalidRange(start=5, end=None, size=3)
    assert (bad_range.code, bad_range.status) == ("invalid_range", 416)
    assert bad_range.headers["Content-Range"] == "bytes */3"
    assert isinstance(BlobNotFound("0" * 64), NotFound)
    unavailable = StorageUnavailable("down")
    assert isinstance(unavailable, ServiceUnavailable)
    assert unavailable.status == 503
    assert isinstance(unavailable, GatewayError)


def test_leftovers_of_a_crash_while_finishing_are_swept(store: LocalBlobStore) -> None:
    """Issue #14.7: a process that died between taking an upload away from its id and deleting
    it left `uploads/.gone-*` forever. `remove_leftovers` removes it (and staging debris) once
    it is older than the cut-off, and never touches a live upload or a blob."""
    from datetime import UTC, datetime, timedelta

    live = "org1-live"
    store.begin_upload(live)
    store.append_upload(live, 0, b"still wanted")
    crashed = "org1-crashed"
    store.begin_upload(crashed)
    store.append_upload(crashed, 0, b"abandoned half way through finishing")
    uploads = store.root / "uploads"
    os.rename(uploads / crashed, uploads / ".gone-0123abcd")  # the crash: no rmtree followed
    (uploads / ".new-4567").mkdir()  # a begin that died before its rename
    (store.root / "tmp" / ".put-89ab").write_bytes(b"a put that died")
    blob = store.put_stream([b"a blob"])
    earlier = datetime.now(UTC) - timedelta(hours=1)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert store.remove_leftovers(earlier) == []  # too recent: maybe still in progress
    expected = ["uploads/.gone-0123abcd", "uploads/.new-4567", "tmp/.put-89ab"]
    assert store.remove_leftovers(later, apply=False) == expected
    assert (uploads / ".gone-0123abcd").exists()
    assert store.remove_leftovers(later) == expected
    assert sorted(os.listdir(uploads)) == [live]
    assert os.listdir(store.root / "tmp") == []
    assert store.upload_offset(live) == len(b"still wanted")
    assert read_all(store, blob.sha256) == b"a blob"
    assert store.remove_leftovers(later) == []


def test_an_installed_upload_shares_the_blobs_file_and_cannot_grow_it(
    store: LocalBlobStore,
) -> None:
    """The blob is a hard link to the upload's data (no copy), so the install seals the upload
    first: an append past the end is refused instead of writing into the blob's inode."""
    from gateway.storage import BlobTooLarge

    store.begin_upload("org1-x")  # no max_bytes
    store.append_upload("org1-x", 0, b"abc")
    info = store.install_upload("org1-x", sha256_hex(b"abc"))
    with pytest.raises(BlobTooLarge):
        store.append_upload("org1-x", 3, b"d")
    path = store.local_path(info.sha256)
    assert path is not None
    assert path.read_bytes() == b"abc"
    assert os.stat(path).st_ino == os.stat(store.root / "uploads" / "org1-x" / "data").st_ino
