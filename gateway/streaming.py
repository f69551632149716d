"""Serve blob bytes fast and in flat memory: HTTP Range parsing and a positional-read response.

Reads are ``os.pread`` of large chunks in a worker thread straight from the blob file, so
memory per download is one chunk whatever the file size and no file offset is shared between
concurrent ranges. Remote backends (no local path) fall back to ``BlobStore.open_range``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.storage.base import BlobStore

__all__ = [
    "STREAM_CHUNK_SIZE",
    "BlobRangeResponse",
    "ByteRange",
    "RangeNotSatisfiable",
    "select_range",
]

STREAM_CHUNK_SIZE = 4 << 20
# ASCII digits only: ``\d`` would also take other scripts' digits, which ``int`` accepts.
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# A position with more digits is past any file we store (< 2**63 bytes): it is answered
# without ``int()``, whose cost grows with the digits and which refuses past 4,300 of them.
_MAX_POSITION_DIGITS = 19
_BEYOND_ANY_FILE = 1 << 63


class RangeNotSatisfiable(GatewayError):
    code = "range_not_satisfiable"
    status = 416
    title = "Range not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the requested range is outside the file ({size} bytes)",
            headers={"Content-Range": f"bytes */{size}"},
        )


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A half-open range ``[start, stop)`` of a file of ``size`` bytes; ``partial`` → 206."""

    start: int
    stop: int
    size: int
    partial: bool

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


def _if_range_matches(if_range: str | None, etag: str) -> bool:
    if if_range is None:
        return True
    value = if_range.strip()
    # Only strong ETags validate a range (RFC 9110 13.1.5); dates never match our blobs.
    return value in (f'"{etag}"', etag)


def _position(digits: str) -> int:
    significant = digits.lstrip("0")
    if len(significant) > _MAX_POSITION_DIGITS:
        return _BEYOND_ANY_FILE
    return int(significant or "0")


def select_range(
    range_header: str | None, if_range: str | None, *, size: int, etag: str
) -> ByteRange:
    """The bytes to send for a ``Range``/``If-Range`` pair (RFC 9110 14).

    A single range is honoured; a header we do not understand (or several ranges) is ignored
    and the whole file is sent, which the RFC allows. Unsatisfiable → ``RangeNotSatisfiable``.
    """
    full = ByteRange(0, size, size, partial=False)
    if not range_header or not _if_range_matches(if_range, etag):
        return full
    match = _RANGE_RE.fullmatch(range_header.strip().replace(" ", ""))
    if match is None:
        return full
    first, last = match.groups()
    if first == "" and last == "":
        return full
    if first == "":  # suffix: the last N bytes
        count = _position(last)
        if count == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - count), size, size, partial=True)
    start = _position(first)
    if start >= size:
        raise RangeNotSatisfiable(size)
    stop = size if last == "" else min(_position(last) + 1, size)
    if stop <= start:
        return full  # "bytes=5-2" is invalid syntax: ignore the header
    return ByteRange(start, stop, size, partial=True)


class BlobRangeResponse(Response):
    """Stream ``byte_range`` of a blob; headers only for HEAD. Stops when the client leaves."""

    def __init__(
        self,
        *,
        blobs: BlobStore,
        sha256: str,
        byte_range: ByteRange,
        headers: Mapping[str, str],
        send_body: bool = True,
        media_type: str = "application/octet-stream",
        chunk_size: int = STREAM_CHUNK_SIZE,
        content: bytes | None = None,
    ) -> None:
        super().__init__(
            status_code=206 if byte_range.partial else 200,
            headers=dict(headers),
            media_type=media_type,
        )
        self.blobs = blobs
        self.sha256 = sha256
        self.byte_range = byte_range
        self.send_body = send_body
        self.chunk_size = chunk_size
        # Small files kept in the database (model.sig) are served from memory.
        self.content = content
        self.headers["content-length"] = str(byte_range.length)
        self.headers["accept-ranges"] = "bytes"
        if byte_range.partial:
            self.headers["content-range"] = byte_range.content_range

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if not self.send_body or self.byte_range.length == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if self.content is not None:
            body = self.content[self.byte_range.start : self.byte_range.stop]
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        path = await anyio.to_thread.run_sync(self.blobs.local_path, self.sha256)
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            if path is not None:
                await self._send_file(path, send)
            else:
                await self._send_stream(send)
            group.cancel_scope.cancel()

    async def _send_file(self, path: Path, send: Send) -> None:
        fd = await anyio.to_thread.run_sync(os.open, path, os.O_RDONLY)
        try:
            position, stop = self.byte_range.start, self.byte_range.stop
            while position < stop:
                count = min(self.chunk_size, stop - position)
                chunk = await anyio.to_thread.run_sync(os.pread, fd, count, position)
                if not chunk:
                    raise OSError(f"blob {self.sha256} is shorter than recorded")
                position += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": position < stop}
                )
        finally:
            os.close(fd)

    async def _send_stream(self, send: Send) -> None:
        chunks = self.blobs.open_range(
            self.sha256, self.byte_range.start, self.byte_range.stop, chunk_size=self.chunk_size
        )
        sentinel = b""
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(next, chunks, sentinel)
                if chunk is sentinel or not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
