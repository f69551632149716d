"""Low-level file helpers for `LocalBlobStore`: durable writes, ranged reads, error translation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

from gateway.storage.errors import StorageUnavailable

__all__ = [
    "FileRangeReader",
    "fsync_dir",
    "pwrite_all",
    "shield_source_errors",
    "unwrap_source_errors",
    "wrap_os_errors",
]


@contextlib.contextmanager
def wrap_os_errors(action: str) -> Iterator[None]:
    """Turn an ``OSError`` from our own file operations into ``StorageUnavailable``.

    Only ``strerror`` goes into the message: paths under the data directory are not the
    client's business.
    """
    try:
        yield
    except OSError as exc:
        raise StorageUnavailable(f"{action} failed: {exc.strerror or exc}") from exc


class _SourceError(Exception):
    """Carries an ``OSError`` raised by the caller's chunk iterable past ``wrap_os_errors``."""

    def __init__(self, original: OSError) -> None:
        super().__init__(str(original))
        self.original = original


def shield_source_errors(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Iterate ``chunks`` so that their ``OSError``s are not mistaken for storage failures."""
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except OSError as exc:
            raise _SourceError(exc) from exc
        yield chunk


@contextlib.contextmanager
def unwrap_source_errors() -> Iterator[None]:
    """Re-raise, unchanged, an error that ``shield_source_errors`` carried out of the source."""
    try:
        yield
    except _SourceError as exc:
        raise exc.original from None


def fsync_dir(directory: os.PathLike[str] | str) -> None:
    """Make renames and new entries in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """``os.pwrite`` until every byte is written (a single call may write fewer)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class FileRangeReader(Iterator[bytes]):
    """Yields ``[start, stop)`` of an open file descriptor in chunks; owns and closes the fd.

    ``pread`` keeps no shared file position, so nothing here depends on who else reads the
    file. The fd closes when the range is exhausted, on ``close()``, or when the reader is
    garbage collected (a client that disconnected mid-download).
    """

    def __init__(self, fd: int, start: int, stop: int, chunk_size: int) -> None:
        self._fd: int | None = fd
        self._position = start
        self._stop = stop
        self._chunk_size = chunk_size

    def __iter__(self) -> FileRangeReader:
        return self

    def __next__(self) -> bytes:
        fd = self._fd
        if fd is None or self._position >= self._stop:
            self.close()
            raise StopIteration
        want = min(self._chunk_size, self._stop - self._position)
        try:
            data = os.pread(fd, want, self._position)
        except OSError as exc:
            self.close()
            raise StorageUnavailable(f"reading blob failed: {exc.strerror or exc}") from exc
        if not data:
            # Blob files are never rewritten in place, so a short file means corruption.
            self.close()
            raise StorageUnavailable("blob file is shorter than when it was opened")
        self._position += len(data)
        return data

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> FileRangeReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
