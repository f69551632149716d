"""Catalog, release, tokens/keys, access, review and log pages, rendered over real data."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import select

from licensing.keys import PrivateKey
from licensing.statements import build_usage_attestation, sign_usage_attestation
from tests.conftest import Account
from tests.gateway.release_fixtures import PublishedRelease, publish_test_release
from tests.web.conftest import csrf_of, sign_in

FIELDS = {"org": "Example Labs", "use": "research", "country": "FR", "agree": "true"}


def attestation(key: PrivateKey, release: PublishedRelease, account: str) -> str:
    from gateway.db.timeutil import utcnow

    statement = build_usage_attestation(
        repo_id=release.repo_id,
        version=release.version,
        release_digest=release.release_digest,
        tier="optimized",
        accepted_terms_digest=release.terms_digest,
        fields=FIELDS,
        requester_account=account,
        requester_key_id=key.key_id,
        now=utcnow(),
    )
    return sign_usage_attestation(statement, key).decode()


def post_form(client: TestClient, page: str, action: str, data: dict[str, Any]) -> Any:
    token = csrf_of(client.get(page).text)
    return client.post(action, data={**data, "csrf_token": token}, follow_redirects=False)


def test_catalog_filters_and_release_page(
    app: Any,
    engine: Engine,
    client: TestClient,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    pat = make_account("pat", "publisher", org="acme")
    publish_test_release(app, engine, pat, tmp_path, repo_id="acme/tiny")
    publish_test_release(
        app, engine, make_account("olga", "publisher", org="other"), tmp_path, repo_id="other/big"
    )
    home = client.get("/")
    assert home.status_code == 200
    assert "acme/tiny" in home.text
    assert "other/big" in home.text
    only = client.get("/", params={"org": "other"}).text
    assert "other/big" in only
    assert 'href="/models/acme/tiny"' not in only
    assert 'href="/models/acme/tiny"' not in client.get("/", params={"gated": "open"}).text
    assert "No models match" in client.get("/", params={"q": "zzz"}).text
    page = client.get("/models/acme/tiny")
    assert page.status_code == 200
    text = page.text
    assert "model.safetensors" in text
    assert "tiergate pull acme/tiny" in text
    assert re.search(r"snapshot_download\(\s*(&#34;|\")acme/tiny", text)
    assert "OpenAI(base_url=" in text
    assert re.search(r"[0-9a-f]{64}", text)  # file digests
    assert client.get("/models/acme/nothing").status_code == 404
    assert "<h1>Not found</h1>" in client.get("/models/acme/nothing").text


def test_model_card_html_is_never_rendered(
    app: Any,
    engine: Engine,
    client: TestClient,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    from gateway.db.engine import session_scope
    from gateway.db.models import Release

    publish_test_release(app, engine, make_account("pat", "publisher", org="acme"), tmp_path)
    with session_scope(engine) as session:
        row = session.exec(select(Release)).one()
        row.model_card = "# Card\n<script>alert(1)</script>\n[x](javascript:alert(1))\n"
        session.add(row)
    text = client.get("/models/acme/tiny").text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text
    assert 'href="javascript:' not in text


def test_tokens_page_creates_shows_once_and_revokes(
    client: TestClient, web_account: Callable[..., Account]
) -> None:
    web_account("dev")
    sign_in(client, "dev")
    created = post_form(
        client, "/account", "/account/tokens", {"name": "laptop", "scope": ["read"]}
    )
    assert created.status_code == 200
    token = re.search(r'value="(tg_[A-Za-z0-9_-]+)"', created.text)
    assert token
    assert (
        client.get("/api/whoami", headers={"Authorization": f"Bearer {token.group(1)}"}).status_code
        == 200
    )
    listing = client.get("/account").text
    assert token.group(1) not in listing  # shown once only
    token_id = re.findall(r"/account/tokens/(\d+)/revoke", listing)[-1]
    revoked = post_form(client, "/account", f"/account/tokens/{token_id}/revoke", {})
    assert revoked.status_code == 303
    assert (
        client.get("/api/whoami", headers={"Authorization": f"Bearer {token.group(1)}"}).status_code
        == 401
    )
    key = PrivateKey.generate("ed25519")
    registered = post_form(
        client,
        "/account",
        "/account/keys",
        {"pem": key.public_key.to_pem().decode(), "name": "laptop key"},
    )
    assert registered.status_code == 303
    assert key.key_id in client.get("/account").text
    bad = post_form(client, "/account", "/account/keys", {"pem": "not a key"})
    assert bad.status_code == 422
    assert "not a usable public key" in bad.text


def test_request_review_grant_journey(
    app: Any,
    engine: Engine,
    browser_client: Callable[[], TestClient],
    web_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    pat = web_account("pat", "publisher", "acme")
    release = publish_test_release(app, engine, pat, tmp_path, mode="manual")
    web_account("dev")
    dev, publisher = sign_in(browser_client(), "dev"), sign_in(browser_client(), "pat")
    key = PrivateKey.generate("ed25519")
    post_form(dev, "/account", "/account/keys", {"pem": key.public_key.to_pem().decode()})
    form_page = f"/access/request/acme/tiny/{release.version}/optimized"
    page = dev.get(form_page)
    assert page.status_code == 200
    assert "Use this model responsibly" in page.text
    assert "tiergate access request acme/tiny@1.0.0" in page.text
    rejected = post_form(dev, form_page, form_page, {"attestation": "{}"})
    assert rejected.status_code in (400, 422)
    sent = post_form(dev, form_page, form_page, {"attestation": attestation(key, release, "dev")})
    assert sent.status_code == 303
    assert sent.headers["location"] == "/access?done=pending"
    assert "pending" in dev.get("/access").text
    queue = publisher.get("/review")
    assert "Example Labs" in queue.text
    assert "signature verified at submission" in queue.text
    request_id = re.search(r"/review/requests/(\d+)/approve", queue.text).group(1)  # type: ignore[union-attr]
    approved = post_form(publisher, "/review", f"/review/requests/{request_id}/approve", {})
    assert approved.status_code == 303
    mine = dev.get("/access").text
    assert "active" in mine
    grant_id = re.search(r"/review/grants/(\d+)/revoke", publisher.get("/review").text).group(1)  # type: ignore[union-attr]
    post_form(
        publisher, "/review", f"/review/grants/{grant_id}/revoke", {"reason": "contract ended"}
    )
    assert "contract ended" in dev.get("/access").text
    saved = post_form(
        publisher,
        "/review",
        "/review/policy/acme/tiny/1.0.0/optimized",
        {"mode": "auto", "grant_days": "7", "max_grants": "5"},
    )
    assert saved.status_code == 303
    assert "<svg" in publisher.get("/review").text


def test_log_explorer_and_entry_proof(
    app: Any,
    engine: Engine,
    client: TestClient,
    web_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    pat = web_account("pat", "publisher", "acme")
    publish_test_release(app, engine, pat, tmp_path)
    app.state.ledger.integrate_now()
    anonymous = client.get("/transparency")
    assert anonymous.status_code == 200
    assert "hidden" in anonymous.text
    assert "Latest checkpoint" in anonymous.text
    entry = client.get("/transparency/entries/0")
    assert entry.status_code == 200
    assert 'id="proof-data"' in entry.text
    assert "not yours to read" in entry.text
    sign_in(client, "pat")
    app.state.ledger.integrate_now()
    mine = client.get("/transparency", params={"action": "release.published"}).text
    assert "release.published" in mine
    shown = client.get("/transparency/entries/0").text
    assert "not yours to read" not in shown
    receipt = client.get("/transparency/receipts/0")
    assert receipt.status_code == 200
    assert "attachment" in receipt.headers["content-disposition"]


def test_detector_page_renders_without_a_service(client: TestClient) -> None:
    page = client.get("/detect")
    assert page.status_code == 200
    assert '<label for="text">' in page.text
