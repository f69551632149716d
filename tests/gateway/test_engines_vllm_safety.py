"""The safety policy on the engine seam: a release with a policy served by (fake) vLLM
servers is scanned like the local engine, whole choices (with regenerate) and streams."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from gateway.config import Settings
from gateway.ledger.events import digest_of
from safety.findings import Finding, ScanContext
from safety.scanner import REDACTION
from tests.conftest import Account, LiveServer, write_test_watermark_key
from tests.gateway.download_fixtures import publish
from tests.gateway.fake_vllm import FakeVllm
from tests.gateway.generation_fixtures import REPO_ID
from tests.gateway.test_engines_vllm import logged, sse, tokenizer  # noqa: F401
from tests.gateway.test_generation_safety import CLOSED, _release
from tests.safety.fakes import WholeTextCheck

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.e2e,
]
TIER = f"{REPO_ID}@1.1.0:open"


class _Everything:
    """Flags every character as profanity (regenerate, then redact): the fake engine's
    random tokens need not hold any particular word."""

    name = "wordlist"
    categories = frozenset({"profanity"})

    def scan(self, text: str, context: ScanContext) -> list[Finding]:
        return [Finding(self.name, "profanity", 1.0, (0, len(text)))] if text else []


CHECKS = {"wordlist": _Everything(), "classifier": WholeTextCheck("~", "hate", 0.9)}


@pytest.fixture
def fakes(tokenizer: Any) -> Iterator[list[FakeVllm]]:  # noqa: F811
    started = [FakeVllm(tokenizer, TIER).start()]
    yield started
    for fake in started:
        fake.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, fakes: list[FakeVllm]) -> Settings:
    engines = tmp_path / "engines.toml"
    urls = json.dumps([f.url for f in fakes])
    engines.write_text(f'[[engine]]\nmodel = "{TIER}"\nurls = {urls}\ntimeout_s = 5\n')
    made = Settings(
        data_dir=tmp_path / "data", database_url=database_url, log_level="warning",
        engines_file=engines, engine_health_interval_seconds=0.2,
    )  # fmt: skip
    write_test_watermark_key(made.resolved_keys_dir)
    return made


@pytest.fixture
def gateway(
    live_server: LiveServer, app: Any, fakes: list[FakeVllm], make_account: Callable[..., Account]
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        built = _release("1.1.0", json.dumps(CLOSED))
        publish(built, http, make_account("pat", "publisher", org="acme"))
        service = app.state.generation
        service.safety.check_factory = lambda name: CHECKS[name]
        [pool] = service.engines.pools.values()
        view = service.engine_model(pool)
        key_id = view.extras["config"].key_id
        for fake in fakes:
            fake.keys = {key_id: (view.extras["config"], view.extras["key"])}
        xargs = {"tiergate_key_id": key_id, "tiergate_payload": 1}
        fakes[0].sample({"prompt": [1], "max_tokens": 2, "vllm_xargs": xargs})
        http.headers.update(make_account("dev").headers)
        yield http


def test_engine_choices_are_regenerated_redacted_and_logged(
    gateway: httpx.Client, fakes: list[FakeVllm], engine: Engine
) -> None:
    body = {"model": TIER, "prompt": "The release gateway", "max_tokens": 10, "seed": 5}
    response = gateway.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["text"] == REDACTION
    output = logged(engine, response.json()["tiergate"]["log_index"])["outputs"][0]
    assert output["safety"]["regenerated"] is True
    assert output["sha256"] == digest_of(choice["text"])
    # The second draw went to the engine with its own seed and the same call tag.
    calls = [b for b in fakes[0].requests if not b.get("ignore_eos") and b.get("seed") is not None]
    assert len(calls) == 2
    assert calls[0]["seed"] != calls[1]["seed"]
    assert calls[0]["vllm_xargs"] == calls[1]["vllm_xargs"]


def test_engine_streams_are_held_back_and_logged_as_sent(
    gateway: httpx.Client, engine: Engine
) -> None:
    body = {"model": TIER, "prompt": "The release gateway", "max_tokens": 12, "stream": True}
    with gateway.stream("POST", "/v1/completions", json=body) as response:
        events = sse(response)
    chunks = [e for e in events if e != "[DONE]"]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text
    assert text.replace(REDACTION, "") == ""
    output = logged(engine, chunks[-1]["tiergate"]["log_index"])["outputs"][0]
    assert output["sha256"] == digest_of(text)
    assert output["safety"]["applied"] == "redact"
    assert output["safety"]["removed_sha256"]
