"""The engine seam: a release tier served by a pool of (fake) vLLM servers, through a real
uvicorn gateway. Error paths (down, 500, timeout, death mid-stream, disconnect, canary
refusals), load balancing, and everything the gateway keeps (log, call tags, detection).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gateway.config import Settings
from gateway.generation.engines import EngineConfigInvalid
from gateway.ledger.events import digest_of
from tests.conftest import Account, LiveServer, free_port, write_test_watermark_key
from tests.gateway.download_fixtures import publish
from tests.gateway.fake_vllm import FakeVllm
from tests.gateway.generation_fixtures import MODEL, build_generation_release, model_dir

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.e2e,
]
TIER = f"{MODEL}:open"
PROMPT = "The release gateway"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir(build_generation_release(), "open")))


@pytest.fixture
def fakes(tokenizer: Any) -> Iterator[list[FakeVllm]]:
    started = [FakeVllm(tokenizer, TIER).start() for _ in range(2)]
    yield started
    for fake in started:
        fake.stop()


def engines_toml(urls: list[str], **extra: Any) -> str:
    lines = ["[[engine]]", f'model = "{TIER}"', f"urls = {json.dumps(urls)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def engine_urls(fakes: list[FakeVllm]) -> list[str]:
    return [f.url for f in fakes]


@pytest.fixture
def settings(tmp_path: Path, database_url: str, engine_urls: list[str]) -> Settings:
    engines = tmp_path / "engines.toml"
    engines.write_text(engines_toml(engine_urls, timeout_s=5))
    made = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_level="warning",
        engines_file=engines,
        # Short, so that a replica fixed or broken mid-test is seen by the next calls.
        engine_health_interval_seconds=0.2,
    )
    write_test_watermark_key(made.resolved_keys_dir)
    return made


@pytest.fixture
def gateway(
    live_server: LiveServer, app: Any, fakes: list[FakeVllm], make_account: Callable[..., Account]
) -> Iterator[httpx.Client]:
    """The published release, the fakes holding its watermark key, a developer's client."""
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        publish(build_generation_release(), http, make_account("pat", "publisher", org="acme"))
        service = app.state.generation
        [pool] = service.engines.pools.values()
        view = service.engine_model(pool)
        key_id = view.extras["config"].key_id
        for fake in fakes:
            fake.keys = {key_id: (view.extras["config"], view.extras["key"])}
        # The watermark kernel compiles on first use: not inside a canary's time budget.
        xargs = {"tiergate_key_id": key_id, "tiergate_payload": 1}
        fakes[0].sample({"prompt": [1], "max_tokens": 2, "vllm_xargs": xargs})
        http.headers.update(make_account("dev").headers)
        yield http


def complete(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/completions", json={"model": TIER, "prompt": PROMPT, **body})


def served(fakes: list[FakeVllm]) -> list[dict[str, Any]]:
    """Call requests the engines received (canaries left out)."""
    return [b for f in fakes for b in f.requests if not b.get("ignore_eos")]


def charged(engine: Engine) -> int:
    with engine.connect() as connection:
        total = connection.execute(text("SELECT COALESCE(SUM(count), 0) FROM rate_limits"))
        return int(total.scalar_one())


def logged(engine: Engine, index: int) -> dict[str, Any]:
    """The fields of log entry ``index``."""
    from sqlmodel import Session

    from gateway.db.models import LogEntry

    with Session(engine) as session:
        row = session.get(LogEntry, index)
        assert row is not None
        fields: dict[str, Any] = json.loads(row.entry)["fields"]
        return fields


def sse(response: httpx.Response) -> list[Any]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# --------------------------------------------------------------------------- happy paths


def test_completion_is_sampled_by_the_engine_logged_and_attributable(
    gateway: httpx.Client, fakes: list[FakeVllm], engine: Engine
) -> None:
    response = complete(gateway, n=2, max_tokens=48, seed=5, temperature=0.8)
    assert response.status_code == 200, response.text
    body = response.json()
    ext = body["tiergate"]
    calls = served(fakes)
    # n = 2: two engine requests, each with its own call tag, from the gateway only.
    assert sorted(b["vllm_xargs"]["tiergate_payload"] for b in calls) == sorted(ext["payloads"])
    assert {b["vllm_xargs"]["tiergate_key_id"] for b in calls} == {ext["watermark_key_id"]}
    assert all(b["return_token_ids"] and b["model"] == TIER and b["n"] == 1 for b in calls)
    assert all(b["max_tokens"] == 48 and b["temperature"] == 0.8 for b in calls)
    assert {b["seed"] for b in calls} == {5, 6}
    # Prompt token ids come from the gateway's tokenizer.
    assert all(isinstance(b["prompt"], list) and b["prompt"] for b in calls)
    assert body["usage"]["completion_tokens"] == 96

    fields = logged(engine, ext["log_index"])
    assert fields["call_id"] == ext["call_id"]
    assert [o["sha256"] for o in fields["outputs"]] == [
        digest_of(c["text"]) for c in body["choices"]
    ]
    assert [o["payload"] for o in fields["outputs"]] == ext["payloads"]

    # The engine's token ids carry the call's tag: the gateway's detector attributes them.
    outputs = {b["vllm_xargs"]["tiergate_payload"]: b for b in calls}
    first = outputs[ext["payloads"][0]]
    ids = fakes[0].sample(first) if first in fakes[0].requests else fakes[1].sample(first)
    detected = gateway.post("/v1/watermark/detect", json={"token_ids": ids, "model": TIER})
    assert detected.status_code == 200, detected.text
    found = detected.json()
    assert found["watermarked"]
    assert found["p_value"] < 1e-6
    assert found["attribution"]["call_id"] == ext["call_id"]
    assert found["attribution"]["choice_index"] == 0


def test_openai_client_streams_chunk_by_chunk(
    gateway: httpx.Client, fakes: list[FakeVllm], live_server: LiveServer, engine: Engine
) -> None:
    import openai

    token = gateway.headers["Authorization"].split()[1]
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=token, max_retries=0)
    before = charged(engine)
    for fake in fakes:
        fake.token_delay_s = 0.05  # tokens come apart, as from a real engine
    stream = client.completions.create(model=TIER, prompt=PROMPT, max_tokens=20, stream=True)
    pieces: list[str] = []
    last: Any = None
    for chunk in stream:
        pieces.append(chunk.choices[0].text)
        last = chunk
    # Relayed as they arrive: about one chunk per engine token, then the closing chunk (the
    # relay merges only what reached it together: test_sse_relay).
    assert len([p for p in pieces if p]) >= 10
    ext = last.model_extra["tiergate"]
    assert ext["log_index"] is not None
    assert logged(engine, ext["log_index"])["outputs"][0]["sha256"] == digest_of("".join(pieces))
    # Charged what was used (prompt + 20), not refunded, not the whole budget.
    used = last.usage.prompt_tokens + 20
    assert charged(engine) - before == used


def test_chat_is_rendered_by_the_gateway_with_the_chat_template(
    gateway: httpx.Client, fakes: list[FakeVllm], tokenizer: Any
) -> None:
    messages = [{"role": "user", "content": "Who signs the checkpoints?"}]
    response = gateway.post(
        "/v1/chat/completions", json={"model": TIER, "messages": messages, "max_tokens": 8}
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"
    [call] = served(fakes)
    from tests.gateway.generation_fixtures import CHAT_TEMPLATE

    rendered = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False,
        chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    assert call["prompt"] == list(rendered)


def test_a_reasoning_engine_s_trace_is_split_streamed_or_not(
    gateway: httpx.Client, fakes: list[FakeVllm], engine: Engine
) -> None:
    """Issue 19: the engine seam goes through the service's split, like the local engine; the
    fake streams the trace 3 characters a chunk, so both markers arrive cut."""
    from gateway.generation.reasoning import check_trace, sha256_of

    trace = "who signs? the log key"
    for fake in fakes:
        fake.think = f"<think>{trace}</think>"
    messages = [{"role": "user", "content": "Who signs the checkpoints?"}]
    body = {"model": TIER, "messages": messages, "max_tokens": 6}
    response = gateway.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message["reasoning"] == trace
    assert "<think>" not in message["content"]
    assert message["content"]
    with gateway.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as got:
        chunks = [json.loads(line[6:]) for line in got.iter_lines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning", "") for d in deltas) == trace
    answer = "".join(d.get("content") or "" for d in deltas)
    assert answer
    assert "think>" not in answer
    with engine.connect() as connection:
        raw = connection.execute(
            text("SELECT entry FROM log_entries WHERE idx = :i"),
            {"i": chunks[-1]["tiergate"]["log_index"]},
        ).scalar_one()
    assert check_trace(raw, 0, reasoning=trace, answer=answer) == []
    assert json.loads(raw)["fields"]["outputs"][0]["reasoning_sha256"] == sha256_of(trace)


def test_client_sent_engine_fields_never_reach_the_engine(
    gateway: httpx.Client, fakes: list[FakeVllm]
) -> None:
    response = complete(
        gateway,
        max_tokens=4,
        vllm_xargs={"tiergate_key_id": "00" * 8, "tiergate_payload": 1},
        logits_processors=["evil"],
        ignore_eos=True,
        extra_args={"tiergate_payload": 2},
    )
    assert response.status_code == 200, response.text
    [call] = served(fakes)
    assert call["vllm_xargs"] == {
        "tiergate_key_id": response.json()["tiergate"]["watermark_key_id"],
        "tiergate_payload": response.json()["tiergate"]["payload"],
    }
    assert "logits_processors" not in call
    assert "extra_args" not in call


def test_replicas_share_the_load_and_a_dead_one_is_skipped(
    gateway: httpx.Client, fakes: list[FakeVllm]
) -> None:
    for _ in range(6):
        assert complete(gateway, max_tokens=2).status_code == 200
    counts = [len([b for b in f.requests if not b.get("ignore_eos")]) for f in fakes]
    assert counts == [3, 3]
    fakes[0].stop()
    for _ in range(4):
        response = complete(gateway, max_tokens=2)
        assert response.status_code == 200, response.text
    assert len([b for b in fakes[1].requests if not b.get("ignore_eos")]) == 7
    ready = gateway.get("/readyz").json()
    [pool] = ready["engines"]
    states = {r["url"]: r["state"] for r in pool["replicas"]}
    assert states == {fakes[0].url: "down", fakes[1].url: "ready"}
    assert ready["status"] == "ready"  # the gateway itself stays ready


# --------------------------------------------------------------------------- errors


def test_engine_500_is_a_typed_error_and_the_quota_is_refunded(
    gateway: httpx.Client, fakes: list[FakeVllm], engine: Engine
) -> None:
    assert complete(gateway, max_tokens=2).status_code == 200  # replicas verified
    before = charged(engine)
    for fake in fakes:
        fake.mode = "500"
    response = complete(gateway, max_tokens=30)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "engine_error"
    assert error["type"] == "server_error"
    assert "engine exploded" in error["message"]
    assert TIER in error["message"]
    assert charged(engine) == before
    # Problem+json elsewhere: the same error class maps once.
    assert gateway.get("/healthz").status_code == 200


def test_engine_timeout_is_504(gateway: httpx.Client, fakes: list[FakeVllm]) -> None:
    assert complete(gateway, max_tokens=2).status_code == 200
    for fake in fakes:
        fake.mode = "hang"
    response = complete(gateway, max_tokens=2)
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "engine_timeout"


def test_engine_context_refusal_is_context_length_exceeded(
    gateway: httpx.Client, fakes: list[FakeVllm]
) -> None:
    assert complete(gateway, max_tokens=2).status_code == 200
    # Over the engine's max_model_len (512, from /v1/models): refused before any engine call.
    over = complete(gateway, max_tokens=510)
    assert over.status_code == 400, over.text
    assert over.json()["error"]["code"] == "context_length_exceeded"
    assert over.json()["error"]["type"] == "invalid_request_error"
    # And the engine's own refusal maps to the same code.
    for fake in fakes:
        fake.mode = "context"
    engine_says = complete(gateway, max_tokens=4)
    assert engine_says.status_code == 400, engine_says.text
    assert engine_says.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize("n", [1, 2])  # one engine stream, or two merged into one response
def test_engine_dying_mid_stream_ends_it_in_band_and_refunds(
    gateway: httpx.Client, fakes: list[FakeVllm], engine: Engine, n: int
) -> None:
    assert complete(gateway, max_tokens=2).status_code == 200
    before = charged(engine)
    for mode in ("die", "error_chunk"):
        for fake in fakes:
            fake.mode = mode
        with gateway.stream(
            "POST", "/v1/completions",
            json={"model": TIER, "prompt": PROMPT, "max_tokens": 40, "stream": True, "n": n},
        ) as response:  # fmt: skip
            assert response.status_code == 200
            events = sse(response)
        assert events[-1] == "[DONE]"
        error = events[-2]["error"]
        assert error["code"] == "engine_error", events
        assert [e for e in events[:-2] if e["choices"][0]["text"]]  # text came first
        _wait_for(lambda: charged(engine) == before)


def test_client_disconnect_aborts_the_engine_stream(
    gateway: httpx.Client, fakes: list[FakeVllm], engine: Engine
) -> None:
    assert complete(gateway, max_tokens=2).status_code == 200
    before = charged(engine)
    for fake in fakes:
        fake.token_delay_s = 0.05
    with gateway.stream(
        "POST", "/v1/completions",
        json={"model": TIER, "prompt": PROMPT, "max_tokens": 400, "stream": True},
    ) as response:  # fmt: skip
        lines = response.iter_lines()
        while not next(lines).startswith("data: "):
            pass
    _wait_for(lambda: sum(f.aborted for f in fakes) == 1)
    assert sum(f.completed for f in fakes) == 0
    _wait_for(lambda: charged(engine) == before)


def test_engine_down_is_503_naming_the_model(
    tmp_path: Path, database_url: str, make_account: Callable[..., Account], engine: Engine
) -> None:
    from gateway.app import create_app

    closed = [f"http://127.0.0.1:{free_port()}"]
    engines = tmp_path / "down.toml"
    engines.write_text(engines_toml(closed))
    made = Settings(
        data_dir=tmp_path / "data2", database_url=database_url, log_level="warning",
        engines_file=engines,
    )  # fmt: skip
    write_test_watermark_key(made.resolved_keys_dir)
    server = LiveServer(create_app(made, engine=engine))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            publish(build_generation_release(), http, make_account("pat", "publisher", "acme"))
            http.headers.update(make_account("dev").headers)
            before = charged(engine)
            response = complete(http, max_tokens=4)
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "engine_unavailable"
            assert TIER in error["message"]
            assert "Retry-After" in response.headers
            assert charged(engine) == before
            # A stream learns it before its response starts: a 503 too, not an in-band error.
            streamed = complete(http, max_tokens=4, stream=True)
            assert streamed.status_code == 503, streamed.text
            assert streamed.json()["error"]["code"] == "engine_unavailable"
            assert charged(engine) == before
            assert http.get("/healthz").status_code == 200  # the gateway stays up
            ready = http.get("/readyz").json()
            assert ready["engines"][0]["replicas"][0]["state"] == "down"
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["plain", "other_key"])
def test_canary_refuses_an_engine_that_does_not_watermark_with_the_key(
    gateway: httpx.Client, fakes: list[FakeVllm], mode: str
) -> None:
    from watermark import PayloadSettings, WatermarkConfig, WatermarkKey

    for fake in fakes:
        if mode == "plain":
            fake.mode = "plain"  # vllm_xargs ignored: a server without the plugin
        else:
            other = WatermarkKey(b"\x07" * 32)
            config = WatermarkConfig.create(
                other, len(fake.tokenizer), payload=PayloadSettings(payload_bits=20)
            )
            fake.keys = {config.key_id: (config, other)}
    response = complete(gateway, max_tokens=4)
    assert response.status_code == 503, response.text
    message = response.json()["error"]["message"]
    expected = "without the watermark" if mode == "plain" else "does not hold watermark key"
    assert expected in message
    assert served(fakes) == []  # no call reached a refused replica
    [pool] = gateway.get("/readyz").json()["engines"]
    assert {r["state"] for r in pool["replicas"]} == {"refused"}
    assert all(expected in r["reason"] for r in pool["replicas"])


# --------------------------------------------------------------------------- helpers, config


def _wait_for(condition: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def test_a_bad_engines_file_stops_the_gateway(tmp_path: Path, database_url: str) -> None:
    from gateway.app import create_app

    bad = tmp_path / "engines.toml"
    bad.write_text('[[engine]]\nmodel = "acme/x"\nurls = ["http://a:1"]\n')
    made = Settings(data_dir=tmp_path / "d", database_url=database_url, engines_file=bad)
    write_test_watermark_key(made.resolved_keys_dir)
    with pytest.raises(EngineConfigInvalid, match="must name a version"):
        create_app(made)
