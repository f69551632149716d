"""`LocalBlobStore`: the embedded default backend, blobs as files in a local directory.

Layout under ``root``::

    blobs/sha256/ab/cd/abcd...      one read-only-by-convention file per blob
    tmp/.put-*                      put_stream in progress (same filesystem, so rename is atomic)
    uploads/<upload_id>/data        resumable upload: bytes received so far
    uploads/<upload_id>/state.json  its sidecar: {"offset": n, "max_bytes": m | null}
    uploads/.new-* .gone-*          uploads being created / discarded (``remove_leftovers``
                                    sweeps those a crash left behind)

Every blob appears through ``os.replace`` (or, for an upload, ``os.link``) of a fully written,
fsynced file followed by an fsync of the directory, so readers never see a partial blob and a
crash never leaves one. An installed upload is sealed (``max_bytes`` = its offset) before its
data file becomes the blob's second name, so no append can ever change a blob.
POSIX only: uploads are serialized with ``flock``, which also works across worker processes.
``root`` must be one filesystem: uploads become blobs by rename, never by copy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from gateway.storage._local_io import (
    FileRangeReader,
    fsync_dir,
    pwrite_all,
    shield_source_errors,
    unwrap_source_errors,
    wrap_os_errors,
)
from gateway.storage.base import (
    DEFAULT_CHUNK_SIZE,
    BlobInfo,
    UploadInfo,
    check_range,
    check_sha256,
    check_upload_id,
)
from gateway.storage.errors import (
    BlobNotFound,
    BlobTooLarge,
    DigestMismatch,
    InvalidDigest,
    InvalidUploadId,
    StorageUnavailable,
    UploadNotFound,
    UploadOffsetMismatch,
)

__all__ = ["LocalBlobStore"]

_STATE_FILE = "state.json"
_GONE_PREFIX = ".gone-"
_NEW_PREFIX = ".new-"
_PUT_PREFIX = ".put-"
_DATA_FILE = "data"
_MAX_STATE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class _UploadState:
    offset: int
    max_bytes: int | None


class LocalBlobStore:
    """Content-addressed blobs in a local directory. Thread and multi-process safe.

    Raises ``StorageUnavailable`` at construction if ``root`` cannot be created or written.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self._blobs = self.root / "blobs" / "sha256"
        self._tmp = self.root / "tmp"
        self._uploads = self.root / "uploads"
        try:
            for directory in (self._blobs, self._tmp, self._uploads):
                directory.mkdir(parents=True, exist_ok=True)
            # A real write, not os.access(): access() says yes to root even on a read-only mount.
            fd, probe = tempfile.mkstemp(dir=self._tmp, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageUnavailable(
                f"blob store root {self.root} is not a writable directory: {exc.strerror or exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    # -- blobs ---------------------------------------------------------------------------

    def _blob_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self._blobs / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        path = self._blob_path(sha256)
        with wrap_os_errors("checking blob"):
            return path.is_file()

    def size(self, sha256: str) -> int:
        path = self._blob_path(sha256)
        with wrap_os_errors("reading blob size"):
            try:
                return path.stat().st_size
            except FileNotFoundError:
                raise BlobNotFound(sha256) from None

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
        with wrap_os_errors("creating temporary blob file"):
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix=_PUT_PREFIX)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with (
                unwrap_source_errors(),
                wrap_os_errors("writing blob"),
                os.fdopen(fd, "wb") as out,
            ):
                for chunk in shield_source_errors(chunks):
                    size += len(chunk)
                    # Checked before writing, so an oversized stream never fills the disk.
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(max_bytes)
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and not hmac.compare_digest(sha256, expected_sha256):
                raise DigestMismatch(expected=expected_sha256, actual=sha256)
            self._install(tmp, sha256)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return BlobInfo(sha256=sha256, size=size)

    def put_file(self, path: Path, expected_sha256: str | None = None) -> BlobInfo:
        # Opened here, outside put_stream, so a missing source is the caller's plain OSError.
        with open(path, "rb") as source:
            return self.put_stream(
                iter(lambda: source.read(DEFAULT_CHUNK_SIZE), b""), expected_sha256
            )

    def _install(self, tmp: Path, sha256: str) -> None:
        """Move a complete, fsynced file into place as blob ``sha256`` (or drop it if present)."""
        dest = self._blob_path(sha256)
        with wrap_os_errors("installing blob"):
            self._ensure_dir(dest.parent)
            if dest.exists():
                # Same name, same content: keep the existing inode so readers holding it (or a
                # sendfile in flight on it) are undisturbed.
                tmp.unlink()
                return
            # Two concurrent installs of the same blob both reach here; either replace wins and
            # the content is identical, so the race is harmless.
            os.replace(tmp, dest)
            fsync_dir(dest.parent)

    def _ensure_dir(self, directory: Path) -> None:
        if directory.is_dir():
            return
        self._ensure_dir(directory.parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return
        # A new directory entry is only durable once its parent is fsynced.
        fsync_dir(directory.parent)

    def open_range(
        self,
        sha256: str,
        start: int = 0,
        end: int | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[bytes]:
        path = self._blob_path(sha256)
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        with wrap_os_errors("opening blob"):
            try:
                # Opened now, not on first next(): the open file pins this content even if the
                # blob is deleted while the response streams.
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                raise BlobNotFound(sha256) from None
            try:
                size = os.fstat(fd).st_size
                first, stop = check_range(start, end, size)
            except BaseException:
                os.close(fd)
                raise
        return FileRangeReader(fd, first, stop, chunk_size)

    def local_path(self, sha256: str) -> Path | None:
        path = self._blob_path(sha256)
        with wrap_os_errors("checking blob"):
            if not path.is_file():
                raise BlobNotFound(sha256)
        return path

    def presigned_url(
        self, sha256: str, *, expires_in: int, filename: str | None = None
    ) -> str | None:
        # Local blobs have no URL of their own: the gateway streams them (zero copy).
        check_sha256(sha256)
        return None

    def delete(self, sha256: str) -> None:
        path = self._blob_path(sha256)
        with wrap_os_errors("deleting blob"), contextlib.suppress(FileNotFoundError):
            # No directory fsync and no pruning of empty fan-out directories: a delete lost in
            # a crash just leaves garbage to collect again, while removing a directory would
            # race a concurrent put into it.
            path.unlink()

    def iter_blobs(self) -> Iterator[BlobInfo]:
        with wrap_os_errors("listing blobs"):
            for first in _sorted_entries(self._blobs):
                for second in _sorted_entries(self._blobs / first):
                    for name in _sorted_entries(self._blobs / first / second):
                        try:
                            check_sha256(name)
                        except InvalidDigest:
                            continue  # stray file: not ours to report
                        if name[:2] != first or name[2:4] != second:
                            continue
                        try:
                            size = (self._blobs / first / second / name).stat().st_size
                        except FileNotFoundError:
                            continue  # deleted while listing
                        yield BlobInfo(sha256=name, size=size)

    # -- resumable uploads ---------------------------------------------------------------

    def _upload_dir(self, upload_id: str) -> Path:
        return self._uploads / check_upload_id(upload_id)

    def begin_upload(self, upload_id: str, max_bytes: int | None = None) -> int:
        upload_dir = self._upload_dir(upload_id)
        with wrap_os_errors("creating upload"):
            state = _read_state(upload_dir)
            if state is not None:
                return state.offset
            # Built aside and renamed into place, so an upload directory is always complete.
            staging = Path(tempfile.mkdtemp(dir=self._uploads, prefix=_NEW_PREFIX))
            try:
                (staging / _DATA_FILE).touch(exist_ok=False)
                _write_state(staging, _UploadState(offset=0, max_bytes=max_bytes))
                fsync_dir(staging)
                try:
                    os.rename(staging, upload_dir)
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    # Lost a race with a concurrent begin of the same id: resume theirs.
                    state = _read_state(upload_dir)
                    if state is None:
                        raise UploadNotFound(upload_id) from None
                    return state.offset
                fsync_dir(self._uploads)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return 0

    @contextlib.contextmanager
    def _locked_upload(self, upload_id: str) -> Iterator[tuple[int, Path, _UploadState]]:
        """Hold the upload's exclusive lock; yields (data fd, upload dir, committed state)."""
        upload_dir = self._upload_dir(upload_id)
        data = upload_dir / _DATA_FILE
        try:
            fd = os.open(data, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # While we waited the upload may have been finished or aborted (and the id even
            # begun afresh): only proceed if our inode is still the upload's data file.
            try:
                current = os.stat(data)
            except FileNotFoundError:
                raise UploadNotFound(upload_id) from None
            if not os.path.samestat(os.fstat(fd), current):
                raise UploadNotFound(upload_id)
            state = _read_state(upload_dir)
            if state is None:
                raise UploadNotFound(upload_id)
            yield fd, upload_dir, state
        finally:
            os.close(fd)  # also releases the flock

    def append_upload(self, upload_id: str, offset: int, chunk: bytes) -> int:
        with wrap_os_errors("appending to upload"), self._locked_upload(upload_id) as locked:
            fd, upload_dir, state = locked
            if offset != state.offset:
                raise UploadOffsetMismatch(upload_id, expected_offset=state.offset, offset=offset)
            new_offset = offset + len(chunk)
            if state.max_bytes is not None and new_offset > state.max_bytes:
                raise BlobTooLarge(state.max_bytes)
            if chunk:
                # Bytes past the committed offset belong to an append that died before its
                # sidecar update; they were never acknowledged, so drop them.
                os.ftruncate(fd, offset)
                pwrite_all(fd, chunk, offset)
                os.fsync(fd)
                # The sidecar is the commit point: written only after the data is durable.
                _write_state(upload_dir, replace(state, offset=new_offset))
            return new_offset

    def upload_offset(self, upload_id: str) -> int:
        upload_dir = self._upload_dir(upload_id)
        with wrap_os_errors("reading upload offset"):
            state = _read_state(upload_dir)
        if state is None:
            raise UploadNotFound(upload_id)
        return state.offset

    def _detach_locked(self, upload_dir: Path) -> Path:
        """Take a locked upload away from its id; the caller owns (and removes) the result."""
        detached = self._uploads / f"{_GONE_PREFIX}{uuid.uuid4().hex}"
        os.rename(upload_dir, detached)
        return detached

    def install_upload(self, upload_id: str, expected_sha256: str) -> BlobInfo:
        check_sha256(expected_sha256)
        detached: Path | None = None
        try:
            with wrap_os_errors("installing upload"), self._locked_upload(upload_id) as locked:
                fd, upload_dir, state = locked
                os.ftruncate(fd, state.offset)  # see append_upload: unacknowledged tail
                os.fsync(fd)
                digest = hashlib.sha256()
                position = 0
                while position < state.offset:
                    block = os.pread(fd, min(DEFAULT_CHUNK_SIZE, state.offset - position), position)
                    if not block:
                        raise StorageUnavailable("upload data is shorter than its offset")
                    digest.update(block)
                    position += len(block)
                sha256 = digest.hexdigest()
                if not hmac.compare_digest(sha256, expected_sha256):
                    detached = self._detach_locked(upload_dir)
                    raise DigestMismatch(expected=expected_sha256, actual=sha256)
                if state.max_bytes != state.offset:
                    # Sealed before the blob shares its inode: no append may ever grow it.
                    _write_state(upload_dir, replace(state, max_bytes=state.offset))
                self._link_blob(upload_dir / _DATA_FILE, sha256)
        finally:
            if detached is not None:
                shutil.rmtree(detached, ignore_errors=True)
        return BlobInfo(sha256=sha256, size=state.offset)

    def _link_blob(self, data: Path, sha256: str) -> None:
        """Make the sealed, fsynced ``data`` file blob ``sha256`` too (a hard link, no copy)."""
        dest = self._blob_path(sha256)
        self._ensure_dir(dest.parent)
        try:
            os.link(data, dest)
        except FileExistsError:
            return  # stored already (by anyone): same name, same content
        fsync_dir(dest.parent)

    def finish_upload(self, upload_id: str, expected_sha256: str) -> BlobInfo:
        info = self.install_upload(upload_id, expected_sha256)
        with contextlib.suppress(UploadNotFound):  # discarded meanwhile by a racing finish
            self.abort_upload(upload_id)
        return info

    def abort_upload(self, upload_id: str) -> None:
        with wrap_os_errors("aborting upload"):
            with self._locked_upload(upload_id) as (_fd, upload_dir, _state):
                detached = self._detach_locked(upload_dir)
            shutil.rmtree(detached, ignore_errors=True)

    def remove_leftovers(self, before: datetime, *, apply: bool = True) -> list[str]:
        found: list[str] = []
        cutoff = before.timestamp()
        with wrap_os_errors("sweeping leftovers"):
            for parent, prefixes in (
                (self._uploads, (_GONE_PREFIX, _NEW_PREFIX)),
                (self._tmp, (_PUT_PREFIX,)),
            ):
                for name in _sorted_entries(parent):
                    if not name.startswith(prefixes):
                        continue
                    path = parent / name
                    moment = _newest_mtime(path)
                    if moment is None or moment >= cutoff:
                        continue  # gone meanwhile, or maybe still in progress
                    if apply:
                        if path.is_dir():
                            shutil.rmtree(path, ignore_errors=True)
                        else:
                            with contextlib.suppress(FileNotFoundError):
                                path.unlink()
                    found.append(f"{parent.name}/{name}")
        return found

    def iter_uploads(self) -> Iterator[UploadInfo]:
        with wrap_os_errors("listing uploads"):
            for name in _sorted_entries(self._uploads):
                try:
                    check_upload_id(name)
                except InvalidUploadId:
                    continue  # ".new-*" staging of a begin in progress, or a stray file
                # Every append writes the data file and then the state sidecar.
                times = []
                for part in (_STATE_FILE, _DATA_FILE):
                    with contextlib.suppress(FileNotFoundError):
                        times.append((self._uploads / name / part).stat().st_mtime)
                if times:  # gone while listing otherwise
                    moment = datetime.fromtimestamp(max(times), tz=UTC)
                    yield UploadInfo(upload_id=name, last_activity=moment)


def _sorted_entries(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _newest_mtime(path: Path) -> float | None:
    """The latest modification time of ``path`` or of anything directly inside it."""
    try:
        times = [path.stat().st_mtime]
        if path.is_dir():
            for entry in os.scandir(path):
                with contextlib.suppress(FileNotFoundError):
                    times.append(entry.stat(follow_symlinks=False).st_mtime)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return max(times)


def _read_state(upload_dir: Path) -> _UploadState | None:
    """The committed state of an upload, or None if there is no such upload."""
    try:
        with open(upload_dir / _STATE_FILE, "rb") as f:
            raw = f.read(_MAX_STATE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if len(raw) > _MAX_STATE_BYTES:
            raise ValueError("oversized")
        fields = json.loads(raw)
        offset, max_bytes = fields["offset"], fields["max_bytes"]
        if not (isinstance(offset, int) and offset >= 0):
            raise ValueError("bad offset")
        if max_bytes is not None and not isinstance(max_bytes, int):
            raise ValueError("bad max_bytes")
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageUnavailable(f"upload state {upload_dir.name!r} is corrupt") from exc
    return _UploadState(offset=offset, max_bytes=max_bytes)


def _write_state(upload_dir: Path, state: _UploadState) -> None:
    payload = json.dumps({"offset": state.offset, "max_bytes": state.max_bytes}).encode()
    fd, tmp_name = tempfile.mkstemp(dir=upload_dir, prefix=".state-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        # No directory fsync: if the rename is lost in a crash the old, smaller offset comes
        # back, which is still true of the data, and the client simply resends from there.
        os.replace(tmp_name, upload_dir / _STATE_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
