"""The bytes of a streamed text piece in OpenAI's chunk format, written from a per-call template.

A relayed stream sends one such chunk per piece of text, so building the chunk as a dict and
serializing all of it per piece was per-token work: the call's id, object kind, creation time
and model never change within a call. :class:`PieceChunks` serializes those once and writes
each piece as the call's prefix, the choice index and the JSON string of the text: the same
bytes as ``orjson.dumps`` of the whole chunk (``tests/gateway/test_sse_relay.py`` compares
them), only cheaper.
"""

from __future__ import annotations

import orjson

__all__ = ["PieceChunks"]

_COMPLETION_TAIL = b',"finish_reason":null,"logprobs":null}]}\n\n'
_CHAT_TAIL = b'},"finish_reason":null}]}\n\n'


class PieceChunks:
    """``data: {...}\\n\\n`` for one piece of one choice's text, for one call."""

    __slots__ = ("_chat", "_fields", "_head")

    def __init__(self, *, call_id: str, kind: str, created: int, model: str, chat: bool) -> None:
        head = orjson.dumps({"id": call_id, "object": kind, "created": created, "model": model})
        # ``{...}`` without its closing brace, then the choices list up to the index.
        self._head = b"data: " + head[:-1] + b',"choices":[{"index":'
        self._chat = chat
        self._fields: dict[str, bytes] = {}

    def piece(self, index: int, text: str, field: str = "content") -> bytes:
        """A chunk carrying ``text`` for choice ``index`` (chat: in ``delta[field]``)."""
        if not self._chat:
            middle, tail = b',"text":', _COMPLETION_TAIL
        else:
            known = self._fields.get(field)
            if known is None:
                known = b',"delta":{"role":"assistant",' + orjson.dumps(field) + b":"
                self._fields[field] = known
            middle, tail = known, _CHAT_TAIL
        return b"".join((self._head, b"%d" % index, middle, orjson.dumps(text), tail))
