"""The release's safety policy on every completion: scanned, acted on, and logged (local
engine; chat and completions; streamed or not; every choice). Checks are fakes: the packaged
ones are tested in tests/safety."""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.services.safety import BLOCKED_TEXT
from safety.findings import Check
from safety.policy import parse_policy
from safety.scanner import REDACTION
from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, publish, sign_release
from tests.gateway.generation_calls import entry
from tests.gateway.generation_fixtures import REPO_ID, build_generation_release
from tests.safety.fakes import BrokenCheck, TermCheck, WholeTextCheck

# The safety layer sits above the database: SQLite is enough (test_generation covers both).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PROMPT = "The release gateway"
# Closed: a check that fails blocks. "e" stands in for a listed term (the tiny model's text
# always has some), so every output has something to remove.
CLOSED = {
    "checks": ["wordlist", "classifier"],
    "rules": {
        "*": {"action": "annotate"},
        "profanity": {"action": "regenerate"},
        "hate": {"action": "block"},
    },
    "hold_back_chars": 8,
    "on_check_failure": "closed",
}
# Open, with a guard release that is never published: calls go on, and say so.
GUARDED = {
    "checks": ["wordlist", "guard"],
    "rules": {"*": {"action": "redact"}},
    "hold_back_chars": 8,
    "on_check_failure": "open",
    "guard": {"release": "acme/guard@9.9.9"},
}


@functools.cache
def _release(version: str, policy: str) -> BuiltRelease:
    first = build_generation_release()
    root = Path(tempfile.mkdtemp(prefix="tiergate-safety-"))
    return sign_release(
        first.out_dir.parent / "model",
        root / "out",
        REPO_ID,
        version,
        safety_policy=parse_policy(json.loads(policy)),
    )


def _use(client: TestClient, checks: dict[str, Check]) -> None:
    def factory(name: str) -> Check:
        return checks[name]

    client.app.state.generation.safety.check_factory = factory  # type: ignore[attr-defined]


@pytest.fixture
def closed_release(client: TestClient, make_account: Callable[..., Account]) -> tuple[str, Account]:
    built = _release("1.1.0", json.dumps(CLOSED))
    publish(built, client, make_account("pat", "publisher", org="acme"))  # type: ignore[arg-type]
    return f"{REPO_ID}@1.1.0", make_account("dev")


# "e" flagged as profanity (regenerate); "~" (never generated) as hate.
_REDACT_E: dict[str, Check] = {
    "wordlist": TermCheck({"e": "profanity"}),
    "classifier": WholeTextCheck("~", "hate", 0.9),
}


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _outside_markers(text: str) -> str:
    return text.replace(REDACTION, "")


def test_a_flagged_choice_is_regenerated_once_then_redacted_and_logged(
    client: TestClient, closed_release: tuple[str, Account], engine: Engine
) -> None:
    model, dev = closed_release
    _use(
        client,
        {"wordlist": TermCheck({"e": "profanity"}), "classifier": WholeTextCheck("~", "hate", 0.9)},
    )
    response = client.post(
        "/v1/completions",
        json={"model": model, "prompt": PROMPT, "max_tokens": 12, "n": 2, "seed": 3},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    fields = entry(engine, body["tiergate"]["log_index"])["fields"]
    assert fields["safety"]["policy_digest"] == parse_policy(CLOSED).digest
    assert fields["safety"]["on_check_failure"] == "closed"
    for choice, output in zip(body["choices"], fields["outputs"], strict=True):
        assert "e" not in _outside_markers(choice["text"]).lower()
        verdict = output["safety"]
        assert verdict["regenerated"] is True
        assert verdict["applied"] == "redact"
        assert verdict["categories"] == ["profanity"]
        assert verdict["scores"]["profanity"] == "1"
        assert verdict["removed_sha256"]
        assert output["sha256"] == _sha(choice["text"])  # the log binds the text returned
        assert body["tiergate"]["safety"][choice["index"]] == verdict
    # Only digests of what was removed: the log holds no removed text.
    assert "text" not in fields["outputs"][0]


def test_block_answers_content_filter_with_no_text(
    client: TestClient, closed_release: tuple[str, Account], engine: Engine
) -> None:
    model, dev = closed_release
    _use(client, {"wordlist": TermCheck({}), "classifier": WholeTextCheck("", "hate", 0.9)})
    response = client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == BLOCKED_TEXT
    output = entry(engine, response.json()["tiergate"]["log_index"])["fields"]["outputs"][0]
    assert output["safety"]["applied"] == "block"
    assert len(output["safety"]["removed_sha256"]) == 1


def test_a_failing_check_under_closed_blocks_and_the_failure_is_logged(
    client: TestClient, closed_release: tuple[str, Account], engine: Engine
) -> None:
    model, dev = closed_release
    _use(client, {"wordlist": TermCheck({}), "classifier": BrokenCheck()})
    response = client.post(
        "/v1/completions", json={"model": model, "prompt": PROMPT, "max_tokens": 6},
        headers=dev.headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"
    output = entry(engine, response.json()["tiergate"]["log_index"])["fields"]["outputs"][0]
    assert output["safety"]["failed_checks"] == [
        {"check": "classifier", "reason": "RuntimeError: model file missing"}
    ]


def test_a_stream_is_held_back_scanned_and_logged_as_sent(
    client: TestClient, closed_release: tuple[str, Account], engine: Engine
) -> None:
    model, dev = closed_release
    _use(
        client,
        {"wordlist": TermCheck({"e": "profanity"}), "classifier": WholeTextCheck("~", "hate", 0.9)},
    )
    with client.stream(
        "POST",
        "/v1/completions",
        json={"model": model, "prompt": PROMPT, "max_tokens": 16, "stream": True, "n": 2},
        headers=dev.headers,
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events[:-1]]
    final = chunks[-1]
    outputs = entry(engine, final["tiergate"]["log_index"])["fields"]["outputs"]
    for index in (0, 1):
        text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == index)
        assert "e" not in _outside_markers(text).lower()
        assert outputs[index]["sha256"] == _sha(text)
        # In a stream, regenerate cannot take back what went out: it redacts.
        assert outputs[index]["safety"]["applied"] == "redact"
        assert outputs[index]["safety"]["regenerated"] is False


def test_a_guard_release_that_cannot_be_verified_fails_open_and_says_so(
    client: TestClient, make_account: Callable[..., Account], engine: Engine
) -> None:
    built = _release("1.2.0", json.dumps(GUARDED))
    publish(built, client, make_account("pat", "publisher", org="acme"))  # type: ignore[arg-type]
    dev = make_account("dev")
    _use(client, {"wordlist": TermCheck({})})
    response = client.post(
        "/v1/completions",
        json={"model": f"{REPO_ID}@1.2.0", "prompt": PROMPT, "max_tokens": 6},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")
    fields = entry(engine, response.json()["tiergate"]["log_index"])["fields"]
    assert fields["safety"]["on_check_failure"] == "open"
    reason = fields["safety"]["unavailable_checks"]["guard"]
    assert reason.startswith("guard acme/guard@9.9.9 refused")
    failed = fields["outputs"][0]["safety"]["failed_checks"]
    assert failed == [{"check": "guard", "reason": reason}]


def test_a_release_without_a_policy_is_not_scanned(
    client: TestClient, make_account: Callable[..., Account], engine: Engine
) -> None:
    built = build_generation_release()
    publish(built, client, make_account("pat", "publisher", org="acme"))  # type: ignore[arg-type]
    response = client.post(
        "/v1/completions",
        json={"model": f"{REPO_ID}@1.0.0", "prompt": PROMPT, "max_tokens": 4},
        headers=make_account("dev").headers,
    )
    fields = entry(engine, response.json()["tiergate"]["log_index"])["fields"]
    assert "safety" not in fields
    assert "safety" not in fields["outputs"][0]
    assert response.json()["tiergate"].get("safety") is None


def _metric(client: TestClient, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


def test_served_calls_and_safety_scans_reach_the_metrics(
    client: TestClient, closed_release: tuple[str, Account]
) -> None:
    """The generation counters and the scan-time histogram move with real calls (they were
    documented but only a test ever incremented them)."""
    model, dev = closed_release
    _use(client, {"wordlist": TermCheck({}), "classifier": WholeTextCheck("~", "hate", 0.9)})
    before = _metric(client, "tiergate_generations_total")
    tokens_before = _metric(client, "tiergate_generated_tokens_total")
    scans_before = _metric(client, "tiergate_safety_scan_seconds_count")
    response = client.post(
        "/v1/completions",
        json={"model": model, "prompt": PROMPT, "max_tokens": 5, "n": 2, "seed": 1},
        headers=dev.headers,
    )
    assert response.status_code == 200, response.text
    generated = response.json()["usage"]["completion_tokens"]
    assert generated > 0
    assert _metric(client, "tiergate_generations_total") == before + 1
    assert _metric(client, "tiergate_generated_tokens_total") == tokens_before + generated
    # Each of the two choices was scanned once (nothing flagged: no regeneration).
    assert _metric(client, "tiergate_safety_scan_seconds_count") == scans_before + 2
