"""The relay of an engine's stream: SSE bytes parsed per read, and what arrived together merged
(issue 17's gateway-overhead target), without losing text, ids, order or errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.generation.sampler import Choice
from gateway.generation.sse import MAX_LINE_BYTES, BadStream, SseChunks
from gateway.generation.upstream import EngineFailed
from gateway.services.engines import remote_stream
from tests._async import run_async


def _event(text: str, ids: list[int], finish: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "token_ids": ids, "finish_reason": finish}
    return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()


def test_events_split_across_reads_come_out_whole_and_in_order() -> None:
    stream = b"".join(_event(t, [i]) for i, t in enumerate("abcdef")) + b"data: [DONE]\n\n"
    events = SseChunks()
    got: list[dict[str, Any]] = []
    for start in range(0, len(stream), 7):  # reads that cut lines anywhere
        got.extend(events.feed(stream[start : start + 7]))
    assert "".join(c["choices"][0]["text"] for c in got) == "abcdef"
    assert [c["choices"][0]["token_ids"] for c in got] == [[i] for i in range(6)]
    assert events.done


def test_one_read_of_many_events_is_one_batch_and_nothing_after_done_is_read() -> None:
    events = SseChunks()
    batch = events.feed(
        b": comment\r\n" + _event("a", [1]) + _event("b", [2]) + b"data: [DONE]\n\n"
        + _event("late", [3])
    )  # fmt: skip
    assert [c["choices"][0]["text"] for c in batch] == ["a", "b"]
    assert events.done
    assert events.feed(_event("later", [4])) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"data: {not json\n", "bad chunk"),
        (b'data: {"error": {"message": "engine core died"}}\n', "failed mid-stream: engine core"),
        (b'data: {"error": "plain"}\n', "failed mid-stream: plain"),
    ],
)
def test_a_bad_or_failed_chunk_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(BadStream, match=reason):
        SseChunks().feed(data)


def test_an_endless_line_is_refused_before_it_grows_past_the_bound() -> None:
    events = SseChunks()
    events.feed(b"data: " + b"x" * (MAX_LINE_BYTES // 2))
    with pytest.raises(BadStream, match="longer than"):
        events.feed(b"x" * (MAX_LINE_BYTES // 2 + 16))


class _Pool:
    """Stands in for a VllmPool: each body's stream is a list of batches (lists of chunks)."""

    model = "acme/tiny@1.0.0:open"

    def __init__(self, batches: dict[int, list[list[dict[str, Any]]]], gate: asyncio.Event):
        self.batches = batches
        self.gate = gate

    async def stream(self, body: dict[str, Any], canary: Any) -> AsyncIterator[Any]:
        for batch in self.batches[body["i"]]:
            await self.gate.wait()
            yield batch


def _chunk(text: str, ids: list[int], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"text": text, "token_ids": ids, "finish_reason": finish}]}


class _Tokenizer:
    eos_token_id = 0


async def _relay(pool: _Pool, count: int) -> list[Any]:
    out: list[Any] = []
    async for piece in remote_stream(pool, None, [{"i": i} for i in range(count)], _Tokenizer()):  # type: ignore[arg-type]
        out.append(piece)
    return out


def test_what_arrived_together_goes_out_merged_per_choice_with_every_id() -> None:
    gate = asyncio.Event()
    pool = _Pool(
        {
            0: [[_chunk("Hel", [1]), _chunk("lo", [2])], [_chunk("", [0], "stop")]],
            1: [[_chunk("Wor", [3])], [_chunk("ld", [4]), _chunk("", [], "length")]],
        },
        gate,
    )

    async def run() -> list[Any]:
        task = asyncio.ensure_future(_relay(pool, 2))
        await asyncio.sleep(0.01)  # both pumps wait; then everything arrives at once
        gate.set()
        return await task

    out = run_async(run())
    pieces, choices = out[:-1], out[-1]
    # One piece per choice per catch-up, each choice's text in order.
    assert "".join(t for i, t in pieces if i == 0) == "Hello"
    assert "".join(t for i, t in pieces if i == 1) == "World"
    assert len(pieces) < 4
    assert choices == [Choice([1, 2], "Hello", "stop"), Choice([3, 4], "World", "length")]


@pytest.mark.parametrize("streams", [1, 2])
def test_text_before_a_failure_is_relayed_then_the_failure_raised(streams: int) -> None:
    gate = asyncio.Event()
    gate.set()
    failing = [[_chunk("ok", [1])], [{"choices": [{"text": "x", "token_ids": "?"}]}]]
    pool = _Pool({i: failing for i in range(streams)}, gate)

    out: list[Any] = []

    async def run() -> None:
        bodies = [{"i": i} for i in range(streams)]
        async for piece in remote_stream(pool, None, bodies, _Tokenizer()):  # type: ignore[arg-type]
            out.append(piece)

    with pytest.raises(EngineFailed, match="no token ids"):
        run_async(run())
    assert (0, "ok") in out
    assert all(isinstance(piece, tuple) for piece in out)  # no choices after a failure


@pytest.mark.parametrize("streams", [1, 2])
def test_a_stream_without_a_finish_reason_is_an_engine_failure(streams: int) -> None:
    gate = asyncio.Event()
    gate.set()
    pool = _Pool({i: [[_chunk("ok", [1])]] for i in range(streams)}, gate)
    with pytest.raises(EngineFailed, match="without a reason"):
        run_async(_relay(pool, streams))


def test_one_stream_relays_all_its_text_and_ends_with_its_choice() -> None:
    gate = asyncio.Event()
    gate.set()
    batches = [
        [_chunk("Hel", [1]), _chunk("lo", [2])],
        [_chunk(" you", [3])],
        [_chunk("", [0], "stop")],
    ]
    pool = _Pool({0: batches}, gate)
    out = run_async(_relay(pool, 1))
    assert "".join(t for _, t in out[:-1]) == "Hello you"  # nothing held back or lost
    assert out[-1] == [Choice([1, 2, 3], "Hello you", "stop")]  # the EOS id stripped


def _chunk_as_dict(chat: bool, index: int, text: str, field: str) -> bytes:
    # What the route wrote per piece before the template: the whole chunk through orjson.
    import orjson

    body: dict[str, Any] = (
        {"index": index, "delta": {"role": "assistant", field: text}, "finish_reason": None}
        if chat
        else {"index": index, "text": text, "finish_reason": None, "logprobs": None}
    )
    chunk = {
        "id": 'cmpl-"x\\y',
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": 1764770000,
        "model": "org/näme@1.0.0:open",
        "choices": [body],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@pytest.mark.parametrize("chat", [False, True])
def test_piece_chunks_are_byte_identical_to_the_serialized_chunk(chat: bool) -> None:
    from gateway.generation.chunks import PieceChunks

    kind = "chat.completion.chunk" if chat else "text_completion"
    pieces = PieceChunks(
        call_id='cmpl-"x\\y', kind=kind, created=1764770000, model="org/näme@1.0.0:open",
        chat=chat,
    )  # fmt: skip
    texts = ["", " the", 'quote " and \\ back', "tab\t\nnew\x00line", "é中😀", "\u2028", "x" * 500]
    for index in (0, 7, 12345):
        for field in ("content", "reasoning"):
            for text in texts:
                expected = _chunk_as_dict(chat, index, text, field)
                assert pieces.piece(index, text, field) == expected


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_pool_reads_the_engine_stream_raw_or_decoded(encoding: str | None) -> None:
    # Identity bytes are read raw (no httpx decoder per chunk); a compressed stream (a proxy
    # in front of the engine) is still decoded before it is split into events.
    import gzip

    import httpx

    from gateway.generation.engines import EngineSpec
    from gateway.generation.upstream import Replica, VllmPool

    raw = _event("Hel", [1]) + _event("lo", [2]) + _event("", [], "stop") + b"data: [DONE]\n\n"
    headers = {"content-type": "text/event-stream"}
    if encoding:
        raw, headers["content-encoding"] = gzip.compress(raw), encoding

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(raw), headers=headers)

    spec = EngineSpec("acme/tiny", "1.0.0", "open", ("http://engine",), "acme/tiny")
    pool = VllmPool(spec, transport=httpx.MockTransport(answer))
    pool.replicas[0] = Replica("http://engine", state="ready", checked_at=float("inf"))

    async def run() -> list[dict[str, Any]]:
        chunks = [c async for batch in pool.stream({}, None) for c in batch]
        await pool.aclose()
        return chunks

    chunks = run_async(run())
    assert [c["choices"][0]["text"] for c in chunks] == ["Hel", "lo", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
