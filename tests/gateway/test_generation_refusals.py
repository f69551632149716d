"""The generation API refuses what it must: gated tiers without a grant, unknown models and
bad requests, quotas and caps, revoked or expired grants and yanked releases on cached model
names, calls past the context length."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import Account
from tests.gateway.download_fixtures import grant_access, publish
from tests.gateway.generation_calls import app_with, complete
from tests.gateway.generation_fixtures import MODEL


def test_gated_tier_needs_a_grant_and_models_lists_it_then(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    listed = client.get("/v1/models", headers=dev.headers).json()
    assert [m["id"] for m in listed["data"]] == [f"{MODEL}:open"]
    refused = complete(client, dev, model=f"{MODEL}:optimized")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "grant_required"

    grant_access(engine, "dev", "acme/chatty", "1.0.0")
    listed = client.get("/v1/models", headers=dev.headers).json()
    assert {m["id"]: m["gated"] for m in listed["data"]} == {
        f"{MODEL}:open": False,
        f"{MODEL}:optimized": True,
    }
    served = complete(client, dev, model="acme/chatty:optimized")
    assert served.status_code == 200, served.text
    assert served.json()["model"] == f"{MODEL}:optimized"
    # Each tier has its own derived watermark key.
    assert (
        served.json()["tiergate"]["watermark_key_id"]
        != (complete(client, dev).json()["tiergate"]["watermark_key_id"])
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unknown_models_and_bad_requests_are_problems(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    cases = [
        ({"model": "acme/nope"}, 404, "not_found"),
        ({"model": "not a model"}, 422, "validation_error"),
        ({"model": f"{MODEL}:gold"}, 404, "not_found"),
        ({"max_tokens": 100_000}, 422, "validation_error"),
        ({"n": 500}, 422, "validation_error"),
        ({"prompt": []}, 422, "validation_error"),
        ({"prompt": ["a", 1]}, 422, "validation_error"),
        ({"prompt": [[1, 2], [3, 1 << 20]]}, 422, "validation_error"),  # outside the vocab
        ({"prompt": [1.5, 2]}, 422, "validation_error"),
        ({"prompt": ["a"] * 17}, 422, "validation_error"),  # generation_max_prompts
        ({"temperature": 7}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = complete(client, dev, **body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["code"] == code
        assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
        assert error["message"]
    assert client.post("/v1/completions", json={"model": MODEL}).status_code == 401
    reader = make_account("reader", scopes=frozenset({"read"}))
    assert complete(client, reader).json()["error"]["code"] == "insufficient_scope"


def test_quota_and_prompt_cap_answer_429_and_422(
    app: FastAPI, client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    limited = app_with(app, generation_tokens_per_minute=40, generation_max_prompt_tokens=20)
    with TestClient(limited, raise_server_exceptions=False) as small:
        long_prompt = complete(small, dev, prompt="word " * 40)
        assert long_prompt.status_code == 422
        assert long_prompt.json()["error"]["code"] == "prompt_too_long"
        assert complete(small, dev, max_tokens=12).status_code == 200
        # 3 prompt + 12 charged, then refunded to what was used; a 30-token call cannot fit.
        over = complete(small, dev, max_tokens=30)
        assert over.status_code == 429, over.text
        assert over.json()["error"]["code"] == "rate_limited"
        assert int(over.headers["Retry-After"]) >= 1


def test_cached_model_names_are_rechecked_on_every_call(
    app: FastAPI,
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    from datetime import timedelta

    from gateway.db.timeutil import utcnow
    from gateway.deps import get_now
    from tests.gateway.download_fixtures import revoke_grant
    from tests.gateway.generation_fixtures import build_generation_version

    dev = make_account("dev")
    gated = f"{MODEL}:optimized"
    grant = grant_access(engine, "dev", "acme/chatty", "1.0.0")
    assert complete(client, dev, model=gated, max_tokens=2).status_code == 200
    assert app.state.generation.refs.get(gated) is not None  # kept for the next call
    assert complete(client, dev, model=gated, max_tokens=2).status_code == 200
    revoke_grant(engine, grant)
    revoked = complete(client, dev, model=gated, max_tokens=2)
    assert revoked.status_code == 403, revoked.text
    assert revoked.json()["error"]["code"] == "grant_required"

    grant_access(engine, "dev", "acme/chatty", "1.0.0", lifetime=timedelta(minutes=5))
    assert complete(client, dev, model=gated, max_tokens=2).status_code == 200
    app.dependency_overrides[get_now] = lambda: utcnow() + timedelta(minutes=6)
    try:
        expired = complete(client, dev, model=gated, max_tokens=2)
    finally:
        app.dependency_overrides.clear()
    assert expired.status_code == 403, expired.text

    # An unpinned name follows a newly published version on the next call.
    assert complete(client, dev, model="acme/chatty").json()["model"] == f"{MODEL}:open"
    publish(build_generation_version("1.1.0"), client, published)  # type: ignore[arg-type]
    newer = complete(client, dev, model="acme/chatty", max_tokens=2)
    assert newer.json()["model"] == "acme/chatty@1.1.0:open", newer.text

    # A yanked release is refused at once, pinned or as the latest.
    assert complete(client, dev, max_tokens=2).status_code == 200  # MODEL pins 1.0.0
    for version in ("1.0.0", "1.1.0"):
        yanked = client.post(
            f"/api/releases/acme/chatty/{version}/yank",
            json={"reason": "test"},
            headers=published.headers,
        )
        assert yanked.status_code == 200, yanked.text
    pinned = complete(client, dev, max_tokens=2)
    assert pinned.status_code == 409, pinned.text
    latest = complete(client, dev, model="acme/chatty", max_tokens=2)
    assert latest.status_code == 404, latest.text  # no published version is left


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_call_past_the_context_length_is_refused_not_garbled(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    """Regression: the local engine generated past max_position_embeddings with a warning."""
    dev = make_account("dev")
    # The release's model has 512 positions.
    over = complete(client, dev, prompt=[5] * 500, max_tokens=20)
    assert over.status_code == 400, over.text
    error = over.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "max_tokens"
    assert "512" in error["message"]
    full = complete(client, dev, prompt=[5] * 512)
    assert full.status_code == 400
    assert full.json()["error"]["param"] == "prompt"
    # No max_tokens: the default (16) shrinks to the 12 positions left.
    payload = {"model": MODEL, "prompt": [5] * 500, "temperature": 0}
    fits = client.post("/v1/completions", json=payload, headers=dev.headers)
    assert fits.status_code == 200, fits.text
    assert fits.json()["usage"]["completion_tokens"] <= 12
