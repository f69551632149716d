"""Chat calls with a reasoning trace, for the reasoning test modules: the sampler's output or
the engine's stream replaced by fixed text (a tiny model cannot be made to think)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.generation.sampler import Choice
from tests.conftest import Account
from tests.gateway.generation_fixtures import MODEL

__all__ = [
    "ANSWER",
    "TEXT",
    "TRACE",
    "StreamedChat",
    "chat",
    "fixed_output",
    "stream_chat_pieces",
]

TRACE = "The user asks who signs. </thin is not the end; the log key does"
ANSWER = "\n\nThe log's signing key."
TEXT = f"<think>{TRACE}</think>{ANSWER}"


def chat(client: TestClient, account: Account, **body: Any) -> Any:
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Who signs the checkpoints?"}],
        "max_tokens": 8,
        **body,
    }
    return client.post("/v1/chat/completions", json=payload, headers=account.headers)


def fixed_output(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """The sampler's output replaced by ``text``."""
    from gateway.services import generation as service

    def fixed(loaded: Any, config: Any, key: Any, jobs: list[Any]) -> list[list[Choice]]:
        return [[Choice([1, 2, 3], text, "stop") for _ in range(len(job.payloads))] for job in jobs]

    monkeypatch.setattr(service, "run_jobs", fixed)


@dataclass(frozen=True)
class StreamedChat:
    """What a streamed chat sent: its chunks (``[DONE]`` left out) and their deltas joined."""

    chunks: list[dict[str, Any]]
    deltas: list[dict[str, Any]]
    reasoning: str
    content: str


def stream_chat_pieces(
    client: TestClient,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    pieces: Sequence[str],
    *,
    stop: Sequence[str] = (),
) -> StreamedChat:
    """Stream a chat whose engine sends ``pieces`` (then the whole text as the result).

    ``stop``: the request's stop sequences, which must reach the engine."""
    from gateway.services import generation as service

    final = "".join(pieces)

    async def engine_pieces(
        self: Any,
        principal: Any,
        request: Any,
        admitted: Any,
        now: datetime,
        on_logged: Any = None,
    ) -> AsyncIterator[Any]:
        for sequence in stop:
            assert sequence in admitted.params.stop  # the request's stop reached the engine
        for piece in pieces:
            yield service.StreamPiece(0, piece)
        result = self._result(admitted, [Choice([1, 2, 3], final, "stop")])
        self._record(principal, request, admitted, result, now, on_logged)
        yield result

    monkeypatch.setattr(service.GenerationService, "_stream_events", engine_pieces)
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Who signs?"}],
        "max_tokens": 8,
        "stream": True,
    }
    if stop:
        body["stop"] = list(stop)
    with client.stream("POST", "/v1/chat/completions", json=body, headers=account.headers) as sent:
        assert sent.status_code == 200
        events = [line[6:] for line in sent.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    return StreamedChat(
        chunks=chunks,
        deltas=deltas,
        reasoning="".join(d.get("reasoning", "") for d in deltas),
        content="".join(d.get("content") or "" for d in deltas),
    )
