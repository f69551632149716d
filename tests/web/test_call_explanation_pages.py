"""Per-call explanation on the log entry view and the detector (issue 19, item 3): safety
verdicts, reasoning and answer digests, per-token marks with pasted logprobs, all escaped."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.schemas.openai import TokenSpan
from gateway.services import detection
from gateway.services.call_explanation import (
    LogprobsInvalid,
    align_logprobs,
    explain_entry,
    parse_logprobs,
)
from tests.conftest import Account
from tests.web.conftest import csrf_of, sign_in
from tests.web.explain_fixtures import (
    ATTACK,
    POLICY,
    REMOVED,
    attributed,
    generation_fields,
    log_generation,
)

# ---------------------------------------------------------------- the service, alone


def test_only_generation_entries_explain_and_old_ones_add_nothing() -> None:
    assert explain_entry(1, {"action": "release.published", "fields": {}}) is None
    old = explain_entry(2, {"action": "generation.completed", "fields": generation_fields(False)})
    assert old is not None
    assert not old.has_details
    new = explain_entry(3, {"action": "generation.completed", "fields": generation_fields()})
    assert new is not None
    assert new.has_details
    verdict = new.outputs[0].safety
    assert verdict is not None
    assert verdict.scores[0] == ("hate", "1")  # highest first
    assert verdict.removed_sha256 == (REMOVED,)
    assert verdict.failed_checks == (("guard", f"RuntimeError: {ATTACK}"),)
    assert new.output(0) is new.outputs[0]
    assert new.output(7) is None
    assert new.model == "acme/chatty@1.0.0:open"
    assert new.repo_id == "acme/chatty"


def test_logprobs_parse_in_both_openai_shapes() -> None:
    chat = {
        "content": [
            {"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Yo", "logprob": -2.5}]}
        ]
    }
    (one,) = parse_logprobs(json.dumps({"logprobs": chat}))  # a whole choice works too
    assert one.token == "Hi"
    assert one.alternatives == (("Yo", -2.5),)
    plain = {"tokens": ["a", "b"], "token_logprobs": [-1.0, -0.5], "top_logprobs": [{"c": -2.0}]}
    views = parse_logprobs(json.dumps(plain))
    assert [v.token for v in views] == ["a", "b"]
    assert views[1].alternatives == ()


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[1, 2]",
        '{"content": [{"token": "a"}]}',
        '{"tokens": ["a", "b"], "token_logprobs": [-1.0]}',
        # An echoed prompt's logprobs (a scoring call): not a sampled text's.
        '{"tokens": ["a", "b"], "token_logprobs": [null, -1.0]}',
        '{"content": [{"token": "a", "logprob": 3.0}]}',
        '{"content": [{"token": "a", "logprob": NaN}]}',
        "[" * 100_000,
    ],
)
def test_malformed_logprobs_are_refused_with_a_typed_error(bad: str) -> None:
    with pytest.raises(LogprobsInvalid):
        parse_logprobs(bad)


def test_logprobs_attach_only_to_tokens_with_the_same_text() -> None:
    views = parse_logprobs(json.dumps({"tokens": ["ab", "X"], "token_logprobs": [-1.0, -2.0]}))
    spans = [
        TokenSpan(start=0, end=2, token_index=0, kind="green"),
        TokenSpan(start=2, end=4, token_index=1, kind="red"),
        TokenSpan(start=4, end=5, token_index=2, kind="red"),
    ]
    assert align_logprobs(spans, "abcde", views) == {0: views[0]}


# ---------------------------------------------------------------- the log entry view


def test_the_entry_view_shows_verdicts_digests_and_a_detector_link_escaped(
    app: Any, client: TestClient, engine: Engine, web_account: Callable[..., Account]
) -> None:
    web_account("dev")
    index = log_generation(engine, "dev", generation_fields())
    old = log_generation(engine, "dev", generation_fields(False))
    app.state.ledger.integrate_now()  # the view shows the proof: a checkpoint must exist
    sign_in(client, "dev")
    html = client.get(f"/transparency/entries/{index}").text
    assert 'id="call-explained"' in html
    assert "What the gateway did to each output" in html
    assert ATTACK not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "applied <strong>redact</strong>" in html
    assert "regenerated once" in html
    assert REMOVED in html
    assert POLICY in html
    assert "sha256:" + "02" * 32 in html
    assert "sha256:" + "03" * 32 in html
    assert "fail closed" in html
    assert "<code>guard</code>: RuntimeError: &lt;script&gt;" in html
    assert 'href="/detect?model=acme/chatty"' in html
    assert 'id="call-explained"' not in client.get(f"/transparency/entries/{old}").text


def test_an_entry_not_yours_shows_no_verdicts(
    app: Any, client: TestClient, engine: Engine, web_account: Callable[..., Account]
) -> None:
    web_account("dev")
    web_account("eve")
    index = log_generation(engine, "dev", generation_fields())
    app.state.ledger.integrate_now()
    sign_in(client, "eve")
    html = client.get(f"/transparency/entries/{index}").text
    assert "not yours to read" in html
    assert 'id="call-explained"' not in html
    assert REMOVED not in html


def test_the_detect_form_preselects_a_linked_model(client: TestClient) -> None:
    # Only models the gateway lists are options: an unknown name selects nothing.
    assert client.get("/detect", params={"model": ATTACK}).status_code == 200
    assert ATTACK not in client.get("/detect", params={"model": ATTACK}).text
    assert client.get("/detect", params={"model": "x" * 201}).status_code == 422


# ---------------------------------------------------------------- the detector page


def _detect(client: TestClient, **data: str) -> Any:
    token = csrf_of(client.get("/detect").text)
    return client.post("/detect", data={"text": "Hello world!", "csrf_token": token, **data})


def test_the_detector_explains_tokens_and_shows_the_call_verdicts(
    client: TestClient,
    engine: Engine,
    web_account: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    web_account("dev")
    index = log_generation(engine, "dev", generation_fields())
    monkeypatch.setattr(detection, "detect_text", lambda *a, **k: attributed(index))
    sign_in(client, "dev")
    logprobs = {
        "content": [
            {
                "token": "Hello",
                "logprob": -0.25,
                "top_logprobs": [{"token": ATTACK, "logprob": -3}],
            },
            {"token": " world", "logprob": -1.5, "top_logprobs": []},
        ]
    }
    page = _detect(client, logprobs=json.dumps(logprobs))
    assert page.status_code == 200, page.text
    html = page.text
    assert ATTACK not in html
    assert 'id="call-safety"' in html
    assert REMOVED in html
    assert "applied <strong>redact</strong>" in html
    assert (
        'data-token="0" title="token 0: green-list token (raises the z-score); logprob -0.250'
        in html
    )
    assert "alternatives: &lt;script&gt;alert(1)&lt;/script&gt; -3.000" in html
    assert 'tabindex="-1" data-token="1" title="token 1: red: not on the green list' in html
    assert 'title="token 2: not scored"' in html
    assert "2 matched to the detector" in html
    assert 'id="token-explain"' in html
    assert "/static/tokens.js" in html
    assert "only available to the caller at call time" not in html


def test_without_logprobs_the_page_says_where_they_are(
    client: TestClient,
    engine: Engine,
    web_account: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    web_account("dev")
    web_account("eve")
    index = log_generation(engine, "dev", generation_fields())
    monkeypatch.setattr(detection, "detect_text", lambda *a, **k: attributed(index))
    sign_in(client, "eve")  # attributed to dev's call: eve sees no verdicts
    html = _detect(client).text
    assert "only available to the caller at call time" in html
    assert REMOVED not in html
    assert "readable by its caller and the model's publisher" in html


def test_malformed_logprobs_are_an_error_on_the_page(
    client: TestClient, web_account: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[bool] = []
    monkeypatch.setattr(detection, "detect_text", lambda *a, **k: called.append(True))
    web_account("dev")
    sign_in(client, "dev")
    page = _detect(client, logprobs='{"content": [{"token": "a", "logprob": "<b>"}]}')
    assert page.status_code == 422
    assert 'role="alert"' in page.text
    assert "OpenAI" in page.text
    assert called == []  # refused before the detector ran
