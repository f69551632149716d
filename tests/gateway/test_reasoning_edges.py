"""Reasoning traces cut short (issue 19, bad input): an unterminated `<think>` and a stream
cut inside the trace by a stop sequence still split as the whole text does, and the logged
digests prove what the client received."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.generation.reasoning import check_trace, sha256_of
from tests.conftest import Account
from tests.gateway.generation_calls import entry
from tests.gateway.generation_fixtures import generation_release  # noqa: F401
from tests.gateway.reasoning_calls import chat, fixed_output, stream_chat_pieces

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_an_unterminated_think_block_is_all_trace_with_an_empty_answer(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cut = "<think>The user asks who signs, and the budget ran out before"
    fixed_output(monkeypatch, cut)
    response = chat(client, make_account("dev"))
    assert response.status_code == 200, response.text
    body = response.json()
    message = body["choices"][0]["message"]
    assert message["reasoning"] == cut.removeprefix("<think>")
    assert not message["content"]
    logged = entry(engine, body["tiergate"]["log_index"])
    output = logged["fields"]["outputs"][0]
    assert output["reasoning_sha256"] == sha256_of(message["reasoning"])
    assert output["answer_sha256"] == sha256_of("")
    assert output["sha256"] == sha256_of(cut)
    raw = json.dumps(logged)
    assert check_trace(raw, 0, reasoning=message["reasoning"], answer="") == []


def test_a_stream_cut_inside_the_trace_by_a_stop_sequence(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's stop sequence is the close marker: the engine ends the text just before
    it (the stop itself is never sent), so the stream ends inside the trace. The held-back
    bytes go out before the result; the answer is empty; both digests match."""
    final = "<think>The user asks who signs; the log key</th"
    # What the engine streams: the text up to the stop, in pieces that cut the open marker
    # and end on what could be the start of the close marker.
    pieces = ["<th", "ink>The user asks", " who signs; the log key", "</th"]
    assert "".join(pieces) == final
    streamed = stream_chat_pieces(
        client, make_account("dev"), monkeypatch, pieces, stop=["</think>"]
    )
    chunks, reasoning, content = streamed.chunks, streamed.reasoning, streamed.content
    # A close marker never completed is trace text: "</th" included, nothing lost.
    assert reasoning == final.removeprefix("<think>")
    assert content == ""
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    logged = entry(engine, chunks[-1]["tiergate"]["log_index"])
    assert check_trace(json.dumps(logged), 0, reasoning=reasoning, answer=content) == []
