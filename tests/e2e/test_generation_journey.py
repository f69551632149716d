"""The developer and detector journeys through a real server with the official `openai` client.

A tiny model is published; the client generates (plain, streaming, chat); the text is found
watermarked and attributed to its exact logged call, also after edits and inside human text;
text the same model writes without the gateway is not flagged.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

pytestmark = pytest.mark.e2e

HUMAN = (
    "Minutes of the garden club, Tuesday. Attendance was good despite the rain. The treasurer "
    "reported that the seed fund is healthy and proposed buying two new wheelbarrows. "
)
PROMPT = "The release gateway"
# Statistical assertions below are fixed outcomes: the tests' gateway uses a fixed watermark
# master key (tests/conftest.py), the tiny model is built from a seed and every call is seeded.


def detect(server: LiveServer, account: Account, **body: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/v1/watermark/detect", json=body, headers=account.headers, timeout=60
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def edit(text: str, rng: random.Random) -> str:
    """Substitute one word in eight and delete one in twelve, as a light human edit would."""
    words = text.split(" ")
    out = []
    for i, word in enumerate(words):
        if i % 12 == 5:
            continue
        out.append(rng.choice(["garden", "rain", "club", "treasurer"]) if i % 8 == 3 else word)
    return " ".join(out)


def _published_for_a_developer(
    built: BuiltRelease, server: LiveServer, make_account: Callable[..., Account]
) -> tuple[Account, Any]:
    """Publish the release as acme's publisher; a developer and their `openai` client."""
    import openai

    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=server.url, timeout=120) as http:
        publish(built, http, publisher)
    dev = make_account("dev")
    return dev, openai.OpenAI(base_url=f"{server.url}/v1", api_key=dev.token, max_retries=0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_openai_client_generates_and_detector_attributes(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    dev, client = _published_for_a_developer(generation_release, live_server, make_account)

    models = [m.id for m in client.models.list()]
    assert models == [f"{MODEL}:open"]

    # 200 tokens, non-streaming: detected with p < 1e-6 and attributed to this very call.
    # Meanwhile the server keeps answering. How fast it answers is a benchmark's question
    # (`bench/generation_overhead.py --responsiveness`), never a wall-clock assertion here.
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=200, seed=11)
        )
    )
    worker.start()
    while worker.is_alive():
        assert httpx.get(f"{live_server.url}/healthz", timeout=60).status_code == 200
        worker.join(timeout=0.02)
    (made,) = result
    text = made.choices[0].text
    ext = made.model_extra["tiergate"]  # type: ignore[index]
    assert ext["call_id"] == made.id
    assert made.usage is not None
    assert made.usage.completion_tokens >= 150
    found = detect(live_server, dev, text=text)
    assert found["watermarked"]
    assert found["p_value"] < 1e-6
    assert found["confidence"] == "high"
    assert found["attribution"]["call_id"] == made.id
    assert found["attribution"]["log_index"] == ext["log_index"]
    assert found["attribution"]["inclusion_proof"]["index"] == ext["log_index"]

    # Streaming completion and chat: the last chunk names the call; the text is watermarked.
    streamed, last = "", None
    for chunk in client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=120, stream=True, seed=12
    ):
        streamed += chunk.choices[0].text
        last = chunk
    assert last is not None
    streamed_ext = last.model_extra["tiergate"]  # type: ignore[index]
    found = detect(live_server, dev, text=streamed)
    assert found["watermarked"]
    assert found["attribution"]["call_id"] == streamed_ext["call_id"]

    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Explain the log."}], max_tokens=16
    )
    assert chat.choices[0].message.role == "assistant"
    pieces = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Explain the log."}],
            max_tokens=16,
            stream=True,
        )
    )
    assert pieces[-1].model_extra["tiergate"]["call_id"] == pieces[-1].id  # type: ignore[index]

    # Errors reach the client as OpenAI-style exceptions, with OpenAI's error body: the SDK
    # exposes our stable code, the offending parameter and the sentence that explains it.
    import openai

    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="acme/missing", prompt="x", max_tokens=4)
    assert missing.value.code == "not_found"
    assert missing.value.type == "not_found_error"
    assert "acme/missing" in str(missing.value)
    with pytest.raises(openai.PermissionDeniedError) as gated:
        client.completions.create(model=f"{MODEL}:optimized", prompt="x", max_tokens=4)
    assert gated.value.code == "grant_required"
    assert "request access" in gated.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        client.completions.create(model=MODEL, prompt="x", max_tokens=100_000)
    assert (invalid.value.code, invalid.value.param) == ("validation_error", "max_tokens")
    stranger = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="tg_x", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as anonymous:
        stranger.models.list()
    assert anonymous.value.type == "authentication_error"

    # Edited text, and the text inside human writing, are still found and attributed. The
    # edit (a word in 8 replaced, one in 12 dropped) costs about a third of the signal, so it
    # is made on a 300-token call: at 200 tokens an edited sample lands near p = 1e-6 now
    # and then (seen once in CI: 3.6e-6), which tests the dice, not the detector.
    longer = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=300, seed=13)
    rng = random.Random(5)
    edited = detect(live_server, dev, text=edit(longer.choices[0].text, rng))
    assert edited["watermarked"], edited["p_value"]
    assert edited["attribution"]["call_id"] == longer.id
    # The whole generation buried in human text on both sides: the windowed scan finds it.
    mixed = detect(live_server, dev, text=HUMAN * 3 + text + " " + HUMAN * 3)
    assert mixed["watermarked"], mixed["p_value"]
    assert mixed["attribution"]["call_id"] == made.id

    # The same model without the gateway (no watermark): never flagged. The bounds hold for
    # any key with false-failure below 1e-6 (exact p-values are uniform or conservative under
    # the null): P(some p <= 1e-8 of 24) <= 2.4e-7; P(6+ of 24 at p <= 0.01) ~ 1.3e-7.
    samples = _unwatermarked_samples(generation_release, count=24, tokens=120)
    p_values = [detect(live_server, dev, text=s, model=MODEL)["p_value"] for s in samples]
    assert all(p > 1e-8 for p in p_values), p_values
    assert sum(p <= 0.01 for p in p_values) <= 5, p_values


def _unwatermarked_samples(built: BuiltRelease, *, count: int, tokens: int) -> list[str]:
    import torch
    from transformers import AutoTokenizer

    from release.loader import load_model

    model = load_model(built.out_dir / "open")
    tokenizer = AutoTokenizer.from_pretrained(str(built.out_dir / "open"))
    starts = ["The", "A", "Every", "Links", "Publishers", "Quantized"]
    prompts = [starts[i % len(starts)] for i in range(count)]
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(1234)
    with torch.inference_mode():
        out = model.generate(
            **batch,
            do_sample=True,
            max_new_tokens=tokens,
            top_k=0,
            pad_token_id=tokenizer.pad_token_id,
        )
    width = batch["input_ids"].shape[1]
    return [tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_openai_client_sends_prompt_arrays_streams_several_choices_and_stops_early(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
) -> None:
    dev, client = _published_for_a_developer(generation_release, live_server, make_account)

    # Prompt arrays, as text and as token ids: prompt p's choices are p * n + i.
    texts = client.completions.create(
        model=MODEL, prompt=["The release gateway", "Links expire after"], n=2, max_tokens=8
    )
    assert [c.index for c in texts.choices] == [0, 1, 2, 3]
    ids = client.completions.create(model=MODEL, prompt=[[464, 245], [300]], max_tokens=4)
    assert [c.index for c in ids.choices] == [0, 1]
    flat = client.completions.create(model=MODEL, prompt=[464, 245, 300], max_tokens=4)
    assert len(flat.choices) == 1
    assert flat.usage is not None
    assert flat.usage.prompt_tokens == 3

    # Streaming two choices: each chunk names its choice; each text is its own logged call
    # tag, found by the detector.
    streamed: dict[int, str] = {}
    finished: dict[int, str] = {}
    last = None
    for chunk in client.completions.create(
        model=MODEL, prompt=PROMPT, n=2, max_tokens=200, stream=True, seed=14
    ):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + choice.text
            if choice.finish_reason is not None:
                finished[choice.index] = choice.finish_reason
        last = chunk
    assert last is not None
    assert sorted(finished) == [0, 1]
    call_id = last.model_extra["tiergate"]["call_id"]  # type: ignore[index]
    for index, text in streamed.items():
        found = detect(live_server, dev, text=text)
        assert found["watermarked"], found["p_value"]
        assert found["attribution"]["call_id"] == call_id
        assert found["attribution"]["choice_index"] == index

    chat_indexes = {
        choice.index
        for chunk in client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Explain the log."}],
            max_tokens=8,
            n=2,
            stream=True,
        )
        for choice in chunk.choices
    }
    assert chat_indexes == {0, 1}

    # A stop sequence ends generation when it appears, and usage counts what was returned.
    stopped = client.completions.create(
        model=MODEL, prompt=PROMPT + " is", max_tokens=200, stop=["e"], logprobs=0, seed=15
    )
    (choice,) = stopped.choices
    assert choice.finish_reason == "stop"
    assert "e" not in choice.text
    assert choice.logprobs is not None
    assert choice.logprobs.tokens is not None
    assert stopped.usage is not None
    assert stopped.usage.completion_tokens == len(choice.logprobs.tokens) < 40
