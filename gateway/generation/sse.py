"""Server-sent events from a vLLM engine, parsed from the bytes of its response as they arrive.

A relay is CPU-bound per chunk: httpx's ``aiter_lines`` runs every chunk through three decoder
generators and ``json.loads``; here one ``feed`` per network read splits the lines of all the
events that arrived and parses each with orjson, handing back the batch. An engine that sends
a line longer than :data:`MAX_LINE_BYTES` without ending it is refused (its buffer is
bounded); everything else follows what vLLM's OpenAI server sends: ``data: {json}`` lines,
``data: [DONE]`` at the end, ``{"error": ...}`` in band when the engine fails mid-stream.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MAX_LINE_BYTES", "BadStream", "SseChunks"]

# vLLM's largest chunk is one choice's text and token ids with top logprobs: kilobytes.
MAX_LINE_BYTES = 1 << 20
_MAX_ERROR_CHARS = 300


class BadStream(Exception):
    """What the engine sent is not a stream of completion chunks (the message says why;
    the pool raises it as its ``EngineFailed``)."""


class SseChunks:
    """The chunk objects of one streamed completion, fed the response's bytes in order."""

    __slots__ = ("_pending", "done")

    def __init__(self) -> None:
        self._pending = b""
        self.done = False  # ``[DONE]`` arrived: nothing after it is read

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The chunks completed by ``data`` (possibly none), in order."""
        if self.done:
            return []
        buffer = self._pending + data if self._pending else data
        lines = buffer.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE_BYTES:
            raise BadStream(f"sent a line longer than {MAX_LINE_BYTES} bytes")
        chunks: list[dict[str, Any]] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, other fields
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                break
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise BadStream("sent a bad chunk") from None
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else error
                raise BadStream(f"failed mid-stream: {str(message)[:_MAX_ERROR_CHARS]}")
            chunks.append(chunk)
        return chunks
