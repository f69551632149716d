"""Prompt log-likelihoods on ``/v1/completions`` (``echo``, ``logprobs``, ``max_tokens=0``):
the numbers a forward pass gives, logged by digest as ``generation.scored``, charged by prompt
tokens, nothing watermarked."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.db.models import LogEntry
from gateway.generation.prompt_logprobs import logprobs_digest
from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease
from tests.gateway.generation_fixtures import MODEL, generation_release, model_dir  # noqa: F401

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PROMPT = "The release gateway signs"


def score(client: TestClient, account: Account, **body: Any) -> Any:
    payload = {"model": MODEL, "prompt": PROMPT, "max_tokens": 0, "echo": True, "logprobs": 2}
    return client.post("/v1/completions", json={**payload, **body}, headers=account.headers)


def _entry(engine: Engine, index: int) -> dict[str, Any]:
    with Session(engine) as session:
        row = session.get(LogEntry, index)
        assert row is not None
        data: dict[str, Any] = json.loads(row.entry)
        return data


@SQLITE
def test_prompt_logprobs_match_a_forward_pass_and_are_logged_by_digest(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    generation_release: BuiltRelease,  # noqa: F811
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = make_account("dev")
    got = score(client, dev, metadata={"tiergate_eval_run": "run-abc"})
    assert got.status_code == 200, got.text
    body = got.json()
    choice = body["choices"][0]
    assert choice["text"] == PROMPT  # the echo, nothing sampled
    logprobs = choice["logprobs"]
    assert logprobs["token_logprobs"][0] is None
    assert logprobs["top_logprobs"][0] is None
    assert body["usage"]["completion_tokens"] == 0

    # The same numbers as a forward pass of the released model.
    folder = str(model_dir(generation_release))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer(PROMPT)["input_ids"]
    assert body["usage"]["prompt_tokens"] == len(ids) == len(logprobs["tokens"])
    with torch.inference_mode():
        dist = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    for i in range(1, len(ids)):
        expected = float(dist[i - 1, ids[i]])
        assert math.isclose(logprobs["token_logprobs"][i], expected, abs_tol=1e-4)
        top = logprobs["top_logprobs"][i]
        assert 2 <= len(top) <= 3  # the two best and the prompt's own token
        assert max(top.values()) == pytest.approx(float(dist[i - 1].max()), abs=1e-4)

    ext = body["tiergate"]
    assert ext["watermarked"] is False
    logged = _entry(engine, ext["log_index"])
    assert logged["action"] == "generation.scored"
    fields = logged["fields"]
    assert fields["call_id"] == body["id"]
    assert fields["watermark"] is None
    assert fields["metadata"] == {"tiergate_eval_run": "run-abc"}
    assert fields["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0}
    assert [s["logprobs_sha256"] for s in fields["scores"]] == ext["logprobs_sha256"]
    # The client recomputes the logged digest from what it received.
    assert ext["logprobs_sha256"] == [logprobs_digest(logprobs)]
    assert PROMPT not in json.dumps(logged)


def test_the_logged_digest_detects_one_changed_logprob() -> None:
    wire = {
        "tokens": ["a", "b", "c"],
        "token_logprobs": [None, -1.25, -0.5],
        "top_logprobs": [None, {"b": -1.25}, {"c": -0.5, "d": -2.0}],
    }
    changed = {**wire, "token_logprobs": [None, -1.25, -0.5000001]}
    assert logprobs_digest(wire) != logprobs_digest(changed)
    reordered = {**wire, "top_logprobs": [None, {"b": -1.25}, {"d": -2.0, "c": -0.5}]}
    assert logprobs_digest(wire) == logprobs_digest(reordered)


@SQLITE
def test_a_batch_of_prompts_scores_each_as_alone(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    alone = [score(client, dev, prompt=p).json() for p in ("A short one", PROMPT + " twice")]
    both = score(client, dev, prompt=["A short one", PROMPT + " twice"]).json()
    for i, single in enumerate(alone):
        ours = both["choices"][i]["logprobs"]["token_logprobs"][1:]
        theirs = single["choices"][0]["logprobs"]["token_logprobs"][1:]
        assert ours == pytest.approx(theirs, abs=1e-4)
    assert len(both["tiergate"]["logprobs_sha256"]) == 2


@SQLITE
def test_bad_scoring_requests_are_clear_errors_and_long_prompts_exceed_the_context(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    no_echo = score(client, dev, echo=False)
    assert no_echo.status_code == 422
    assert no_echo.json()["error"]["param"] == "max_tokens"
    assert score(client, dev, logprobs=None).status_code == 422
    assert score(client, dev, n=2).status_code == 422
    assert score(client, dev, stream=True).status_code == 422
    # The model has 512 positions; a 512-token prompt fits (nothing is generated), 513 not.
    assert score(client, dev, prompt=[5] * 512).status_code == 200
    over = score(client, dev, prompt=[5] * 513)
    assert over.status_code == 400, over.text
    assert over.json()["error"]["code"] == "context_length_exceeded"
