"""`POST /v1/moderations` through a real server with the `openai` client (fake checks: the
packaged ones are tested in tests/safety)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from gateway.services.moderation import MAX_TOTAL_CHARS
from safety.findings import Check
from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import publish
from tests.gateway.generation_fixtures import REPO_ID
from tests.gateway.test_generation_safety import CLOSED, _release
from tests.safety.fakes import FakeLangId, TermCheck, WholeTextCheck

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CHECKS: dict[str, Check] = {
    "langid": FakeLangId("de"),
    "wordlist": TermCheck({"slurx": "hate", "zut": "profanity"}),
    "classifier": WholeTextCheck("boom", "indiscriminate_weapons", 0.8),
}


def _use(app: Any, checks: dict[str, Check]) -> None:
    app.state.generation.safety.check_factory = lambda name: checks[name]


def _client(server: LiveServer, account: Account) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.token, max_retries=0)


def test_the_openai_client_moderates_a_text_and_a_list(
    app: Any, live_server: LiveServer, make_account: Callable[..., Account]
) -> None:
    _use(app, CHECKS)
    client = _client(live_server, make_account("dev"))
    one = client.moderations.create(input="you slurx")
    result = one.results[0]
    assert result.flagged is True
    assert result.categories.hate is True
    assert result.category_scores.hate == 1.0
    assert result.categories.violence is False
    extra = result.model_extra or {}
    assert extra["tiergate"]["language"] == "de"
    raw = result.model_dump()
    assert raw["categories"]["hate"] is True  # the MLCommons name and OpenAI's agree here
    many = client.moderations.create(input=["fine words", "big boom", "zut"])
    flagged = [r.flagged for r in many.results]
    assert flagged == [False, True, True]
    boom = many.results[1].model_dump()
    assert boom["categories"]["indiscriminate_weapons"] is True
    assert boom["categories"]["illicit/violent"] is True
    assert boom["category_scores"]["indiscriminate_weapons"] == pytest.approx(0.8)


def test_moderation_refuses_strangers_and_oversized_input(
    app: Any, live_server: LiveServer, make_account: Callable[..., Account]
) -> None:
    _use(app, CHECKS)
    stranger = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="tg_x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.moderations.create(input="x")
    client = _client(live_server, make_account("dev"))
    with pytest.raises(openai.APIStatusError) as large:
        client.moderations.create(input=["a" * (MAX_TOTAL_CHARS // 2), "b" * MAX_TOTAL_CHARS])
    assert large.value.status_code == 413
    with pytest.raises(openai.UnprocessableEntityError):
        client.moderations.create(input=[])


def test_moderation_is_rate_limited(app: Any, make_account: Callable[..., Account]) -> None:
    from gateway.app import create_app

    state = app.state.gateway
    settings = state.settings.model_copy(update={"rate_limit_moderations_per_account": 2})
    limited = create_app(settings, engine=state.engine, keyring=state.keyring)
    dev = make_account("dev")
    with TestClient(limited, raise_server_exceptions=False) as client:
        _use(limited, CHECKS)
        codes = [
            client.post("/v1/moderations", json={"input": "x"}, headers=dev.headers).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 429]


def test_a_release_name_uses_its_signed_policy(
    app: Any, live_server: LiveServer, make_account: Callable[..., Account]
) -> None:
    _use(app, CHECKS)
    built = _release("1.1.0", json.dumps(CLOSED))
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        publish(built, http, make_account("pat", "publisher", org="acme"))
    client = _client(live_server, make_account("dev"))
    answer = client.moderations.create(input="zut", model=f"{REPO_ID}@1.1.0")
    from safety.policy import parse_policy

    assert answer.model == f"{REPO_ID}@1.1.0:open"
    assert (answer.model_extra or {})["tiergate"]["policy_digest"] == parse_policy(CLOSED).digest
    assert answer.results[0].flagged is True  # profanity: regenerate at 0.5
    with pytest.raises(openai.NotFoundError):
        client.moderations.create(input="zut", model="acme/nothing@1.0.0")
