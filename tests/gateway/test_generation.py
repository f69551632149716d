"""The OpenAI-compatible generation API through the app, on SQLite and PostgreSQL: completions,
chat, streaming, stop sequences, several prompts and choices.

Refusals are in test_generation_refusals.py, what a failure leaves behind in
test_generation_integrity.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.models import GenerationCall, WatermarkKeyRecord
from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease
from tests.gateway.generation_calls import PROMPT, complete, entry
from tests.gateway.generation_fixtures import (  # noqa: F401
    MODEL,
    generation_release,
    model_dir,
)


def test_completion_is_watermarked_logged_and_tagged(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    response = complete(client, dev, n=2, temperature=0.9, top_p=0.95, seed=None)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["model"] == f"{MODEL}:open"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] <= 24
    ext = body["tiergate"]
    assert ext["call_id"] == body["id"]
    assert len(ext["payloads"]) == 2
    assert ext["payloads"][0] != ext["payloads"][1]
    assert ext["payload"] == ext["payloads"][0]

    logged = entry(engine, ext["log_index"])
    assert logged["action"] == "generation.completed"
    fields = logged["fields"]
    assert fields["call_id"] == ext["call_id"]
    assert fields["model"]["tier"] == "open"
    assert len(fields["model"]["release_digest"]) == 64
    assert len(fields["model"]["tier_manifest_digest"]) == 64
    config = json.loads(fields["watermark"]["config"])
    assert config["key_id"] == ext["watermark_key_id"]
    assert config["payload"]["payload_bits"] == 20
    assert fields["sampling"]["temperature"] == "0.9"
    assert fields["sampling"]["n"] == 2
    assert [o["payload"] for o in fields["outputs"]] == ext["payloads"]
    assert fields["prompt_sha256"].startswith("sha256:")
    # Plaintext retention is off by default: neither prompt nor output is in the log.
    assert PROMPT not in json.dumps(logged)
    assert "text" not in fields["outputs"][0]

    with Session(engine) as session:
        rows = session.exec(select(GenerationCall)).all()
        assert {(r.call_id, r.choice_index, r.payload) for r in rows} == {
            (ext["call_id"], i, p) for i, p in enumerate(ext["payloads"])
        }
        key = session.get(WatermarkKeyRecord, ext["watermark_key_id"])
        assert key is not None
        assert key.next_tag == 2
    # The secret key never appears: only its id.
    assert "watermark-master" not in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_chat_completion_uses_the_chat_template(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Who signs the checkpoints?"}],
            "max_tokens": 8,
            "logprobs": True,
            "top_logprobs": 2,
        },
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert len(choice["logprobs"]["content"]) == body["usage"]["completion_tokens"]
    assert all(len(t["top_logprobs"]) == 2 for t in choice["logprobs"]["content"])
    # "user: ...\nassistant:" is longer than the message alone: the template was applied.
    assert body["usage"]["prompt_tokens"] > 6
    assert entry(engine, body["tiergate"]["log_index"])["fields"]["endpoint"] == (
        "chat.completions"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_streaming_completion_sends_chunks_then_the_call(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    with client.stream(
        "POST",
        "/v1/completions",
        json={"model": MODEL, "prompt": PROMPT, "max_tokens": 10, "stream": True, "seed": 7},
        headers=dev.headers,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] in ("length", "stop")
    assert final["tiergate"]["call_id"] == final["id"]
    assert final["usage"]["completion_tokens"] <= 10
    # The stream carried exactly the text that was generated and logged.
    logged = entry(engine, final["tiergate"]["log_index"])["fields"]["outputs"][0]
    assert logged["sha256"] == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stop_sequences_cut_the_text(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    # Each call carries its own tag, so two calls sample differently even with one seed:
    # stop on something every output of this word-level model contains.
    for stream in (False, True):
        body = {"model": MODEL, "prompt": PROMPT + " is", "max_tokens": 16, "stop": ["e"]}
        response = client.post(
            "/v1/completions", json={**body, "stream": stream}, headers=dev.headers
        )
        assert response.status_code == 200, response.text
        if stream:
            chunks = [
                json.loads(line[6:])
                for line in response.text.splitlines()
                if line.startswith("data: {")
            ]
            text = "".join(c["choices"][0]["text"] for c in chunks)
            finish = chunks[-1]["choices"][0]["finish_reason"]
        else:
            text = response.json()["choices"][0]["text"]
            finish = response.json()["choices"][0]["finish_reason"]
        assert finish == "stop", text
        assert "e" not in text


def test_prompt_arrays_get_n_choices_each_and_are_logged_per_prompt(
    generation_release: BuiltRelease,  # noqa: F811
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    from transformers import AutoTokenizer

    dev = make_account("dev")
    prompts = ["The release gateway", "Links expire after"]
    response = complete(client, dev, prompt=prompts, n=2, max_tokens=6, echo=True)
    assert response.status_code == 200, response.text
    body = response.json()
    choices = body["choices"]
    # OpenAI's numbering: prompt p's i-th choice is p * n + i.
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert [c["text"].startswith(prompts[c["index"] // 2]) for c in choices] == [True] * 4
    assert len(set(body["tiergate"]["payloads"])) == 4
    fields = entry(engine, body["tiergate"]["log_index"])["fields"]
    assert [o["prompt_index"] for o in fields["outputs"]] == [0, 0, 1, 1]
    digests = ["sha256:" + hashlib.sha256(p.encode()).hexdigest() for p in prompts]
    assert fields["prompt_sha256s"] == digests
    assert fields["usage"] == {
        "prompt_tokens": body["usage"]["prompt_tokens"],
        "completion_tokens": body["usage"]["completion_tokens"],
    }
    with Session(engine) as session:
        rows = session.exec(select(GenerationCall)).all()
        assert sorted(r.choice_index for r in rows) == [0, 1, 2, 3]

    # Token ids: one list is one prompt, a list of lists is several; echo decodes them.
    single = complete(client, dev, prompt=[464, 245], max_tokens=4, echo=True).json()
    assert len(single["choices"]) == 1
    assert single["usage"]["prompt_tokens"] == 2
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir(generation_release)))
    assert single["choices"][0]["text"].startswith(tokenizer.decode([464, 245]))
    several = complete(client, dev, prompt=[[464, 245], [300]], max_tokens=4)
    assert several.status_code == 200, several.text
    assert [c["index"] for c in several.json()["choices"]] == [0, 1]
    assert several.json()["usage"]["prompt_tokens"] == 3
    ids_fields = entry(engine, several.json()["tiergate"]["log_index"])["fields"]
    assert ids_fields["prompt_sha256s"][1] == "sha256:" + hashlib.sha256(b"[300]").hexdigest()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_streaming_several_choices_names_each_chunks_index(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    body = {"model": MODEL, "prompt": ["The release", "Links"], "n": 2, "max_tokens": 8}
    with client.stream(
        "POST", "/v1/completions", json={**body, "stream": True}, headers=dev.headers
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
        if choice["finish_reason"] is not None:
            finishes[choice["index"]] = choice["finish_reason"]
    assert sorted(finishes) == [0, 1, 2, 3]
    final = chunks[-1]
    assert final["usage"]["completion_tokens"] <= 32
    outputs = entry(engine, final["tiergate"]["log_index"])["fields"]["outputs"]
    for output in outputs:
        streamed = texts.get(output["index"], "")
        assert output["sha256"] == "sha256:" + hashlib.sha256(streamed.encode()).hexdigest()

    chat = client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Explain the log."}],
            "max_tokens": 6,
            "n": 2,
            "stream": True,
        },
        headers=dev.headers,
    )
    indexes = {
        json.loads(line[6:])["choices"][0]["index"]
        for line in chat.text.splitlines()
        if line.startswith("data: {")
    }
    assert indexes == {0, 1}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stop_sequences_end_generation_and_usage_counts_the_returned_text(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    response = complete(
        client, dev, prompt=PROMPT + " is", max_tokens=200, stop=["e"], logprobs=0, n=2
    )
    assert response.status_code == 200, response.text
    body = response.json()
    total = 0
    for choice in body["choices"]:
        assert choice["finish_reason"] == "stop"
        tokens = choice["logprobs"]["tokens"]
        # Every counted token contributes to the text; none beyond it is counted.
        assert "".join(tokens).startswith(choice["text"])
        assert len("".join(tokens[:-1])) < len(choice["text"]) or not tokens
        total += len(tokens)
    assert body["usage"]["completion_tokens"] == total < 40
    logged = entry(engine, body["tiergate"]["log_index"])["fields"]
    assert [o["tokens"] for o in logged["outputs"]] == [
        len(c["logprobs"]["tokens"]) for c in body["choices"]
    ]
