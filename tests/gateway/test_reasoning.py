"""Reasoning traces (issue 19): the splitter, the chat API's `reasoning` field, logged digests."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from gateway.cli.log import group
from gateway.generation.reasoning import (
    DEFAULT_MARKERS,
    ReasoningMarkers,
    ReasoningSplitter,
    check_trace,
    markers_for,
    sha256_of,
    split_reasoning,
)
from tests.conftest import Account
from tests.gateway.generation_calls import entry
from tests.gateway.generation_fixtures import (  # noqa: F401
    MODEL,
    generation_release,
    model_dir,
)
from tests.gateway.reasoning_calls import (
    ANSWER,
    TEXT,
    TRACE,
    chat,
    fixed_output,
    stream_chat_pieces,
)
from tests.gateway.test_ledger import ledger_of

# ------------------------------------------------------------------ the splitter


def test_whole_text_splits() -> None:
    assert split_reasoning(TEXT) == split_reasoning("  \n" + TEXT)
    split = split_reasoning(TEXT)
    assert (split.reasoning, split.answer) == (TRACE, ANSWER)
    assert split_reasoning("no trace <think>x</think>").reasoning is None
    assert split_reasoning("no trace").answer == "no trace"
    assert split_reasoning("<think>cut short").reasoning == "cut short"
    assert split_reasoning("<think>cut short").answer == ""
    inside = split_reasoning("opened by the template</think>answer", inside=True)
    assert (inside.reasoning, inside.answer) == ("opened by the template", "answer")


def _stream(text: str, cuts: list[int], markers: ReasoningMarkers, inside: bool) -> Any:
    splitter = ReasoningSplitter(markers, inside=inside)
    bounds = [0, *sorted({c % (len(text) + 1) for c in cuts}), len(text)]
    out = []
    for start, end in itertools.pairwise(bounds):
        out += splitter.feed(text[start:end])
    out += splitter.finish()
    reasoning = "".join(t for k, t in out if k == "reasoning")
    content = "".join(t for k, t in out if k == "content")
    return splitter.opened, reasoning, content, out


_ALPHABET = st.sampled_from(
    ["<", "/", "t", "h", "i", "n", "k", ">", " ", "\n", "a", "é", "<think>", "</think>"]
)


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(_ALPHABET, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    inside=st.booleans(),
    custom=st.booleans(),
)
def test_any_chunking_splits_like_the_whole_text(
    parts: list[str], cuts: list[int], inside: bool, custom: bool
) -> None:
    text = "".join(parts)
    markers = ReasoningMarkers("<th>", "</th>") if custom else DEFAULT_MARKERS
    whole = split_reasoning(text, markers, inside=inside)
    opened, reasoning, content, pieces = _stream(text, cuts, markers, inside)
    assert opened == (whole.reasoning is not None)
    assert reasoning == (whole.reasoning or "")
    assert content == whole.answer
    assert all(t for _, t in pieces)  # no empty pieces


def test_the_answer_is_never_held_back() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<thi") == []
    assert splitter.feed("nk>abc</th") == [("reasoning", "abc")]
    assert splitter.feed("ink>ans") == [("content", "ans")]
    assert splitter.feed("wer <") == [("content", "wer <")]
    plain = ReasoningSplitter()
    assert plain.feed("Hello") == [("content", "Hello")]


def test_markers_come_from_the_release() -> None:
    class Tok:
        def __init__(self, template: str | None, **kwargs: Any) -> None:
            self.chat_template = template
            self.init_kwargs = kwargs

    assert markers_for(Tok(None)) == DEFAULT_MARKERS
    assert markers_for(Tok("{{ '<thinking>' }}...</thinking>")) == ReasoningMarkers(
        "<thinking>", "</thinking>"
    )
    own = Tok("<think></think>", reasoning_start_token="[R]", reasoning_end_token="[/R]")
    assert markers_for(own) == ReasoningMarkers("[R]", "[/R]")


# ------------------------------------------------------------------ through the app


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_chat_returns_the_trace_apart_and_logs_both_digests(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_output(monkeypatch, TEXT)
    dev = make_account("dev")
    response = chat(client, dev, n=2)
    assert response.status_code == 200, response.text
    body = response.json()
    for choice in body["choices"]:
        assert choice["message"]["reasoning"] == TRACE
        assert choice["message"]["content"] == ANSWER
    logged = entry(engine, body["tiergate"]["log_index"])
    output = logged["fields"]["outputs"][1]
    assert output["sha256"] == sha256_of(TEXT)  # the whole text, as before
    assert output["reasoning_sha256"] == sha256_of(TRACE)
    assert output["answer_sha256"] == sha256_of(ANSWER)

    # A trace shown later verifies against the entry; an edited one does not.
    raw = json.dumps(logged)
    assert check_trace(raw, 1, reasoning=TRACE, answer=ANSWER) == []
    assert check_trace(raw, 1, reasoning=TRACE + " ") != []
    assert check_trace(raw, 7, reasoning=TRACE) == ["the entry has no choice 7"]

    # Completions are not split: the text stays whole and no trace digests are logged.
    response = client.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "x", "max_tokens": 4},
        headers=dev.headers,
    )
    assert response.json()["choices"][0]["text"] == TEXT
    output = entry(engine, response.json()["tiergate"]["log_index"])["fields"]["outputs"][0]
    assert "reasoning_sha256" not in output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_chat_without_a_trace_has_null_reasoning(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    response = chat(client, make_account("dev"))
    assert response.status_code == 200, response.text
    body = response.json()
    message = body["choices"][0]["message"]
    assert message["reasoning"] is None
    output = entry(engine, body["tiergate"]["log_index"])["fields"]["outputs"][0]
    assert output["reasoning_sha256"] is None
    assert output["answer_sha256"] == output["sha256"] == sha256_of(message["content"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_streamed_chat_sends_reasoning_deltas_across_cut_markers(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine's pieces cut both markers; the deltas split as the whole text does."""
    pieces = [
        "<thi",
        "nk>The user",
        " asks who signs. </thin is not",
        " the end; the log key does</",
        "think>",
        ANSWER[:3],
        ANSWER[3:],
    ]
    assert "".join(pieces) == TEXT
    streamed = stream_chat_pieces(client, make_account("dev"), monkeypatch, pieces)
    reasoning, content = streamed.reasoning, streamed.content
    assert (reasoning, content) == (TRACE, ANSWER)
    assert not any("reasoning" in d and "content" in d for d in streamed.deltas)
    final = streamed.chunks[-1]
    output = entry(engine, final["tiergate"]["log_index"])["fields"]["outputs"][0]
    assert (
        check_trace(
            json.dumps(entry(engine, final["tiergate"]["log_index"])),
            0,
            reasoning=reasoning,
            answer=content,
        )
        == []
    )
    assert output["sha256"] == sha256_of(TEXT)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_proves_a_trace_with_the_entry_s_receipt(
    app: Any,
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`tiergate log verify-receipt --reasoning/--answer`: the receipt proves the entry is in
    the log, the entry's digests prove the trace and answer shown are the ones generated."""
    fixed_output(monkeypatch, TEXT)
    dev = make_account("dev")
    response = chat(client, dev)
    assert response.status_code == 200, response.text
    body = response.json()
    ledger_of(app).integrate_now()
    receipt = client.get(f"/log/receipt/{body['tiergate']['log_index']}", headers=dev.headers)
    assert receipt.status_code == 200, receipt.text
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(receipt.text)
    vkey = client.get("/log/vkey").text.strip()
    message = body["choices"][0]["message"]
    (tmp_path / "trace.txt").write_text(message["reasoning"], encoding="utf-8")
    (tmp_path / "answer.txt").write_text(message["content"], encoding="utf-8")

    def verify(*extra: str) -> Result:
        args = ["verify-receipt", str(receipt_file), "--vkey", vkey, *extra]
        return CliRunner().invoke(group, args, catch_exceptions=False)

    ok = verify(
        "--reasoning", str(tmp_path / "trace.txt"), "--answer", str(tmp_path / "answer.txt")
    )
    assert ok.exit_code == 0, ok.output
    assert "the reasoning and answer of choice 0 match the digests" in ok.output
    (tmp_path / "edited.txt").write_text(message["reasoning"] + ".", encoding="utf-8")
    bad = verify("--reasoning", str(tmp_path / "edited.txt"))
    assert bad.exit_code == 1
    assert "the reasoning of choice 0 is not the one logged" in bad.output
    missing = verify("--reasoning", str(tmp_path / "trace.txt"), "--choice", "3")
    assert missing.exit_code == 1
    assert "the entry has no choice 3" in missing.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_prompt_ending_with_the_open_marker_starts_inside_the_trace(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A template that opens the block for the model: the output starts inside the trace.
    The test template ends its prompt with "assistant:"; made the open marker here."""
    from gateway.services import generation_admission as admission

    monkeypatch.setattr(
        admission, "markers_for", lambda _: ReasoningMarkers("assistant:", "</think>")
    )
    fixed_output(monkeypatch, "thought here</think>the answer")
    response = chat(client, make_account("dev"))
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert (message["reasoning"], message["content"]) == ("thought here", "the answer")
