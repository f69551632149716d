"""Backend-agnostic tests every `BlobStore` must pass; subclass with a `blob_store` fixture.

Nothing here looks at files or buckets: only the protocol is used, so an S3 backend reuses the
whole class by providing its own fixture. Hypothesis examples share one store per test, which
content addressing makes harmless; upload ids are fresh per example.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.storage import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    DigestMismatch,
    InvalidDigest,
    InvalidRange,
    InvalidUploadId,
    UploadNotFound,
    UploadOffsetMismatch,
)

SHARED_STORE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

BAD_DIGESTS = [
    "",
    "../../etc/passwd",
    "/" + "a" * 63,
    "a" * 63,
    "a" * 65,
    "A" * 64,
    "a" * 63 + "\x00",
    "a" * 64 + "\n",
    "g" * 64,
    "ab/cd/" + "a" * 58,
    "\u0661" * 64,  # ARABIC-INDIC DIGIT ONE: a digit to `\d`, not to us
]
BAD_UPLOAD_IDS = ["", ".", "..", "../x", "a/b", "/abs", "a\x00b", "a b", ".hidden", "x" * 129]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions; repeated positions give empty pieces on purpose."""
    points = sorted([0, len(data), *(min(c, len(data)) for c in cuts)])
    return [data[a:b] for a, b in itertools.pairwise(points)]


def read_all(store: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open_range(sha256, start, end))


def new_upload_id() -> str:
    return uuid.uuid4().hex


@st.composite
def content_and_range(draw: st.DrawFn) -> tuple[bytes, int, int]:
    data = draw(st.binary(max_size=4096))
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, len(data)))
    return data, start, end


class BlobStoreContract:
    """Inherit as ``class TestXxx(BlobStoreContract)`` next to a ``blob_store`` fixture."""

    # -- put and read ----------------------------------------------------------------------

    def test_put_then_read_back(self, blob_store: BlobStore) -> None:
        data = b"hello tiergate" * 1000
        info = blob_store.put_stream([data[:7], data[7:]])
        assert info == BlobInfo(sha256=sha256_hex(data), size=len(data))
        assert blob_store.has(info.sha256)
        assert blob_store.size(info.sha256) == len(data)
        assert read_all(blob_store, info.sha256) == data
        assert info in set(blob_store.iter_blobs())

    def test_empty_blob(self, blob_store: BlobStore) -> None:
        info = blob_store.put_stream([])
        assert info == BlobInfo(sha256=sha256_hex(b""), size=0)
        assert list(blob_store.open_range(info.sha256)) == []

    def test_put_is_idempotent(self, blob_store: BlobStore) -> None:
        first = blob_store.put_stream([b"same"])
        second = blob_store.put_stream([b"sa", b"me"], expected_sha256=first.sha256)
        assert first == second
        assert [b for b in blob_store.iter_blobs() if b.sha256 == first.sha256] == [first]

    def test_put_file(
        self, blob_store: BlobStore, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        source = tmp_path_factory.mktemp("src") / "weights.bin"
        source.write_bytes(b"\x00\x01" * 5000)
        info = blob_store.put_file(source, expected_sha256=sha256_hex(source.read_bytes()))
        assert read_all(blob_store, info.sha256) == source.read_bytes()

    @SHARED_STORE
    @given(case=content_and_range(), cuts=st.lists(st.integers(0, 4096)), chunk=st.integers(1, 97))
    def test_range_equals_slice(
        self, blob_store: BlobStore, case: tuple[bytes, int, int], cuts: list[int], chunk: int
    ) -> None:
        data, start, end = case
        info = blob_store.put_stream(split(data, cuts), expected_sha256=sha256_hex(data))
        pieces = list(blob_store.open_range(info.sha256, start, end, chunk_size=chunk))
        assert b"".join(pieces) == data[start:end]
        assert all(0 < len(p) <= chunk for p in pieces)
        assert read_all(blob_store, info.sha256, start) == data[start:]

    @pytest.mark.parametrize(("start", "end"), [(-1, None), (0, 11), (11, None), (6, 5), (0, -1)])
    def test_invalid_range(self, blob_store: BlobStore, start: int, end: int | None) -> None:
        info = blob_store.put_stream([b"0123456789"])
        with pytest.raises(InvalidRange) as caught:
            blob_store.open_range(info.sha256, start, end)
        assert caught.value.size == 10

    def test_full_and_empty_ranges_at_the_edges(self, blob_store: BlobStore) -> None:
        info = blob_store.put_stream([b"0123456789"])
        assert read_all(blob_store, info.sha256, 10) == b""
        assert read_all(blob_store, info.sha256, 3, 3) == b""
        assert read_all(blob_store, info.sha256, 9, 10) == b"9"

    def test_missing_blob(self, blob_store: BlobStore) -> None:
        absent = sha256_hex(b"never stored " + uuid.uuid4().bytes)
        assert not blob_store.has(absent)
        with pytest.raises(BlobNotFound):
            blob_store.size(absent)
        with pytest.raises(BlobNotFound):
            blob_store.open_range(absent)  # eager: before any iteration

    def test_delete_is_idempotent(self, blob_store: BlobStore) -> None:
        info = blob_store.put_stream([b"to be deleted"])
        blob_store.delete(info.sha256)
        assert not blob_store.has(info.sha256)
        blob_store.delete(info.sha256)
        assert info not in set(blob_store.iter_blobs())

    # -- refusals leave nothing behind -----------------------------------------------------

    @SHARED_STORE
    @given(data=st.binary(max_size=2048), cuts=st.lists(st.integers(0, 2048), max_size=5))
    def test_digest_mismatch_leaves_nothing(
        self, blob_store: BlobStore, data: bytes, cuts: list[int]
    ) -> None:
        data = uuid.uuid4().bytes + data  # never stored by an earlier example
        wrong = sha256_hex(data + b"!")
        with pytest.raises(DigestMismatch) as caught:
            blob_store.put_stream(split(data, cuts), expected_sha256=wrong)
        assert caught.value.actual == sha256_hex(data)
        assert not blob_store.has(sha256_hex(data))
        assert not blob_store.has(wrong)
        assert sha256_hex(data) not in {b.sha256 for b in blob_store.iter_blobs()}

    def test_max_bytes(self, blob_store: BlobStore) -> None:
        data = b"x" * 100 + uuid.uuid4().bytes
        assert blob_store.put_stream([data], max_bytes=len(data)).size == len(data)
        other = b"y" * 100 + uuid.uuid4().bytes
        with pytest.raises(BlobTooLarge):
            blob_store.put_stream([other[:50], other[50:]], max_bytes=len(other) - 1)
        assert not blob_store.has(sha256_hex(other))

    def test_source_errors_pass_through_untouched(self, blob_store: BlobStore) -> None:
        class ClientGone(Exception):
            pass

        def chunks(error: Exception) -> Iterator[bytes]:
            yield b"partial data " + uuid.uuid4().bytes
            raise error

        with pytest.raises(ClientGone):
            blob_store.put_stream(chunks(ClientGone()))
        with pytest.raises(ConnectionResetError):  # an OSError, yet not the store's failure
            blob_store.put_stream(chunks(ConnectionResetError()))

    @pytest.mark.parametrize("bad", BAD_DIGESTS)
    def test_bad_digests_refused_everywhere(self, blob_store: BlobStore, bad: str) -> None:
        calls: list[Callable[[], object]] = [
            lambda: blob_store.has(bad),
            lambda: blob_store.size(bad),
            lambda: blob_store.open_range(bad),
            lambda: blob_store.local_path(bad),
            lambda: blob_store.delete(bad),
            lambda: blob_store.put_stream([b"x"], expected_sha256=bad),
            lambda: blob_store.finish_upload(new_upload_id(), bad),
        ]
        for call in calls:
            with pytest.raises(InvalidDigest):
                call()

    @pytest.mark.parametrize("bad", BAD_UPLOAD_IDS)
    def test_bad_upload_ids_refused_everywhere(self, blob_store: BlobStore, bad: str) -> None:
        calls: list[Callable[[], object]] = [
            lambda: blob_store.begin_upload(bad),
            lambda: blob_store.append_upload(bad, 0, b"x"),
            lambda: blob_store.upload_offset(bad),
            lambda: blob_store.finish_upload(bad, sha256_hex(b"")),
            lambda: blob_store.abort_upload(bad),
        ]
        for call in calls:
            with pytest.raises(InvalidUploadId):
                call()

    # -- resumable uploads -----------------------------------------------------------------

    @SHARED_STORE
    @given(data=st.binary(max_size=4096), cuts=st.lists(st.integers(0, 4096), max_size=8))
    def test_upload_in_pieces_equals_one_shot_put(
        self, blob_store: BlobStore, data: bytes, cuts: list[int]
    ) -> None:
        upload_id = new_upload_id()
        assert blob_store.begin_upload(upload_id) == 0
        offset = 0
        for piece in split(data, cuts):
            offset = blob_store.append_upload(upload_id, offset, piece)
            assert blob_store.upload_offset(upload_id) == offset
        info = blob_store.finish_upload(upload_id, sha256_hex(data))
        assert info == blob_store.put_stream([data])
        assert read_all(blob_store, info.sha256) == data
        with pytest.raises(UploadNotFound):
            blob_store.upload_offset(upload_id)

    def test_begin_is_idempotent_and_reports_offset(self, blob_store: BlobStore) -> None:
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        blob_store.append_upload(upload_id, 0, b"abc")
        assert blob_store.begin_upload(upload_id) == 3

    def test_wrong_offset_tells_the_right_one(self, blob_store: BlobStore) -> None:
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        blob_store.append_upload(upload_id, 0, b"abcd")
        for wrong in (0, 2, 5):
            with pytest.raises(UploadOffsetMismatch) as caught:
                blob_store.append_upload(upload_id, wrong, b"efgh")
            assert caught.value.expected_offset == 4
        assert blob_store.append_upload(upload_id, 4, b"efgh") == 8
        info = blob_store.finish_upload(upload_id, sha256_hex(b"abcdefgh"))
        assert read_all(blob_store, info.sha256) == b"abcdefgh"

    def test_upload_max_bytes(self, blob_store: BlobStore) -> None:
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id, max_bytes=5)
        blob_store.append_upload(upload_id, 0, b"abc")
        with pytest.raises(BlobTooLarge):
            blob_store.append_upload(upload_id, 3, b"def")
        assert blob_store.upload_offset(upload_id) == 3  # the refused chunk left no trace
        blob_store.abort_upload(upload_id)

    def test_finish_with_wrong_digest_stores_nothing(self, blob_store: BlobStore) -> None:
        data = b"upload " + uuid.uuid4().bytes
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        blob_store.append_upload(upload_id, 0, data)
        with pytest.raises(DigestMismatch):
            blob_store.finish_upload(upload_id, sha256_hex(b"something else"))
        assert not blob_store.has(sha256_hex(data))
        with pytest.raises(UploadNotFound):
            blob_store.upload_offset(upload_id)

    def test_abort(self, blob_store: BlobStore) -> None:
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        blob_store.append_upload(upload_id, 0, b"abc")
        blob_store.abort_upload(upload_id)
        for call in (
            lambda: blob_store.upload_offset(upload_id),
            lambda: blob_store.append_upload(upload_id, 3, b"d"),
            lambda: blob_store.finish_upload(upload_id, sha256_hex(b"abc")),
            lambda: blob_store.abort_upload(upload_id),
        ):
            with pytest.raises(UploadNotFound):
                call()
        assert blob_store.begin_upload(upload_id) == 0  # the id is free again

    def test_iter_uploads_lists_open_uploads_only(self, blob_store: BlobStore) -> None:
        before = datetime.now(UTC) - timedelta(seconds=5)
        open_id, finished_id, aborted_id = new_upload_id(), new_upload_id(), new_upload_id()
        data = b"listed " + uuid.uuid4().bytes
        for upload_id in (open_id, finished_id, aborted_id):
            blob_store.begin_upload(upload_id)
            blob_store.append_upload(upload_id, 0, data)
        blob_store.finish_upload(finished_id, sha256_hex(data))
        blob_store.abort_upload(aborted_id)
        listed = {u.upload_id: u for u in blob_store.iter_uploads()}
        assert open_id in listed
        assert finished_id not in listed
        assert aborted_id not in listed
        moment = listed[open_id].last_activity
        assert moment.tzinfo is not None
        assert before <= moment <= datetime.now(UTC) + timedelta(seconds=5)
        blob_store.abort_upload(open_id)
        assert open_id not in {u.upload_id for u in blob_store.iter_uploads()}

    def test_install_keeps_the_upload_until_it_is_discarded(self, blob_store: BlobStore) -> None:
        """A crash after install, before the caller recorded the blob, loses nothing: the
        upload is still whole, and installing it again verifies the same bytes."""
        data = b"install " + uuid.uuid4().bytes * 100
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id, max_bytes=len(data))
        blob_store.append_upload(upload_id, 0, data)
        info = blob_store.install_upload(upload_id, sha256_hex(data))
        assert info == BlobInfo(sha256=sha256_hex(data), size=len(data))
        assert read_all(blob_store, info.sha256) == data
        assert blob_store.upload_offset(upload_id) == len(data)
        assert blob_store.begin_upload(upload_id) == len(data)  # what a resuming client sees
        assert blob_store.append_upload(upload_id, len(data), b"") == len(data)
        assert blob_store.install_upload(upload_id, sha256_hex(data)) == info
        blob_store.abort_upload(upload_id)
        assert read_all(blob_store, info.sha256) == data  # the blob outlives its upload
        with pytest.raises(UploadNotFound):
            blob_store.install_upload(upload_id, sha256_hex(data))

    def test_appending_after_install_never_changes_the_blob(self, blob_store: BlobStore) -> None:
        data = b"sealed " + uuid.uuid4().bytes
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)  # no max_bytes: only the install can stop appends
        blob_store.append_upload(upload_id, 0, data)
        info = blob_store.install_upload(upload_id, sha256_hex(data))
        with contextlib.suppress(BlobTooLarge):
            blob_store.append_upload(upload_id, len(data), b"more")
        assert read_all(blob_store, info.sha256) == data
        assert blob_store.size(info.sha256) == len(data)
        blob_store.abort_upload(upload_id)
        assert read_all(blob_store, info.sha256) == data

    def test_install_over_a_stored_blob_dedups(self, blob_store: BlobStore) -> None:
        data = b"dedup " + uuid.uuid4().bytes
        stored = blob_store.put_stream([data])
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        blob_store.append_upload(upload_id, 0, data)
        assert blob_store.finish_upload(upload_id, stored.sha256) == stored
        assert [b for b in blob_store.iter_blobs() if b.sha256 == stored.sha256] == [stored]
        assert read_all(blob_store, stored.sha256) == data

    def test_install_with_wrong_digest_discards_the_upload(self, blob_store: BlobStore) -> None:
        data = b"wrong " + uuid.uuid4().bytes
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        blob_store.append_upload(upload_id, 0, data)
        with pytest.raises(DigestMismatch):
            blob_store.install_upload(upload_id, sha256_hex(b"other"))
        assert not blob_store.has(sha256_hex(data))
        with pytest.raises(UploadNotFound):
            blob_store.upload_offset(upload_id)

    def test_remove_leftovers_spares_live_uploads_and_blobs(self, blob_store: BlobStore) -> None:
        data = b"live " + uuid.uuid4().bytes
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        blob_store.append_upload(upload_id, 0, data)
        stored = blob_store.put_stream([b"kept " + uuid.uuid4().bytes])
        later = datetime.now(UTC) + timedelta(hours=1)
        assert blob_store.remove_leftovers(later, apply=False) == []
        assert blob_store.remove_leftovers(later) == []
        assert blob_store.upload_offset(upload_id) == len(data)
        assert blob_store.has(stored.sha256)
        blob_store.abort_upload(upload_id)

    # -- concurrency -----------------------------------------------------------------------

    def test_concurrent_puts_of_the_same_blob(self, blob_store: BlobStore) -> None:
        data = uuid.uuid4().bytes * 50_000  # ~800 KB: long enough for the writes to overlap
        barrier = threading.Barrier(8)
        results: list[BlobInfo] = []
        errors: list[BaseException] = []

        def put() -> None:
            try:
                barrier.wait()
                results.append(
                    blob_store.put_stream([data[i : i + 65536] for i in range(0, len(data), 65536)])
                )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=put) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert set(results) == {BlobInfo(sha256=sha256_hex(data), size=len(data))}
        assert read_all(blob_store, sha256_hex(data)) == data

    def test_concurrent_appends_at_the_same_offset(self, blob_store: BlobStore) -> None:
        upload_id = new_upload_id()
        blob_store.begin_upload(upload_id)
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def append(n: int) -> None:
            barrier.wait()
            try:
                blob_store.append_upload(upload_id, 0, bytes([n]) * 1000)
                outcomes.append("ok")
            except UploadOffsetMismatch as exc:
                outcomes.append(f"conflict@{exc.expected_offset}")

        threads = [threading.Thread(target=append, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["conflict@1000"] * 5 + ["ok"]
        assert blob_store.upload_offset(upload_id) == 1000
        blob_store.abort_upload(upload_id)
