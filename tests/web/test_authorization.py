"""Every page that shows another account's data: who may see it and who may act on it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import select

from licensing.keys import PrivateKey
from tests.conftest import Account
from tests.gateway.release_fixtures import publish_test_release
from tests.web.conftest import csrf_of, sign_in
from tests.web.test_pages import attestation, post_form

SIGNED_IN_PAGES = ["/account", "/access", "/review", "/access/request/acme/tiny/1.0.0/optimized"]


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient) -> None:
    for page in SIGNED_IN_PAGES:
        response = client.get(page, follow_redirects=False)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/login?next=")
    # Signed-out form posts go to sign-in too, and change nothing.
    token = csrf_of(client.get("/login").text)
    for action in ("/account/tokens", "/review/requests/1/approve", "/review/grants/1/revoke"):
        response = client.post(
            action, data={"csrf_token": token, "name": "x", "reason": "x"}, follow_redirects=False
        )
        assert response.status_code == 303, action
        assert response.headers["location"].startswith("/login")


@pytest.fixture
def world(
    app: Any,
    engine: Engine,
    browser_client: Callable[[], TestClient],
    web_account: Callable[..., Account],
    tmp_path: Path,
) -> dict[str, Any]:
    """acme publishes a manually reviewed release; dev asks for it and is granted a second one."""
    web_account("pat", "publisher", "acme")
    web_account("mallory", "publisher", "evil")
    web_account("dev")
    web_account("eve")
    release = publish_test_release(
        app,
        engine,
        Account("pat", "publisher", "acme", _token(engine, "pat")),
        tmp_path,
        mode="manual",
    )
    clients = {name: sign_in(browser_client(), name) for name in ("pat", "mallory", "dev", "eve")}
    key = PrivateKey.generate("ed25519")
    dev = clients["dev"]
    post_form(dev, "/account", "/account/keys", {"pem": key.public_key.to_pem().decode()})
    form = "/access/request/acme/tiny/1.0.0/optimized"
    for _ in range(2):
        sent = post_form(dev, form, form, {"attestation": attestation(key, release, "dev")})
        assert sent.status_code == 303
    queue = clients["pat"].get("/review").text
    first, second = re.findall(r"/review/requests/(\d+)/approve", queue)[:2]
    post_form(clients["pat"], "/review", f"/review/requests/{second}/approve", {})
    grant = re.findall(r"/review/grants/(\d+)/revoke", clients["pat"].get("/review").text)[0]
    return {"clients": clients, "pending": first, "grant": grant}


def _token(engine: Engine, username: str) -> str:
    from gateway.db.engine import session_scope
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts

    with session_scope(engine) as session:
        user = accounts.get_user(session, username)
        return accounts.issue_token(session, user, name="t", now=utcnow()).plaintext


def test_developers_see_only_their_own_requests_and_grants(world: dict[str, Any]) -> None:
    dev, eve = world["clients"]["dev"], world["clients"]["eve"]
    assert "acme/tiny" in dev.get("/access").text
    others = eve.get("/access").text
    assert "acme/tiny" not in others
    assert "No grants yet" in others
    assert eve.get("/review").status_code == 403


def test_another_orgs_publisher_sees_and_decides_nothing(world: dict[str, Any]) -> None:
    mallory = world["clients"]["mallory"]
    queue = mallory.get("/review").text
    assert "Example Labs" not in queue
    assert "Nothing to review" in queue
    pending, grant = world["pending"], world["grant"]
    approve = post_form(mallory, "/review", f"/review/requests/{pending}/approve", {})
    deny = post_form(mallory, "/review", f"/review/requests/{pending}/deny", {"reason": "no"})
    revoke = post_form(mallory, "/review", f"/review/grants/{grant}/revoke", {"reason": "no"})
    policy = post_form(
        mallory,
        "/review",
        "/review/policy/acme/tiny/1.0.0/optimized",
        {"mode": "auto", "grant_days": "1"},
    )
    assert [r.status_code for r in (approve, deny, revoke, policy)] == [404, 404, 404, 403]
    # A developer cannot act as a reviewer either.
    dev = world["clients"]["dev"]
    assert post_form(dev, "/access", f"/review/requests/{pending}/approve", {}).status_code == 403
    # And the request is still pending for its real reviewer.
    assert f"/review/requests/{pending}/approve" in world["clients"]["pat"].get("/review").text


def test_tokens_and_keys_of_others_cannot_be_revoked(world: dict[str, Any], engine: Engine) -> None:
    from sqlmodel import select

    from gateway.db.engine import session_scope
    from gateway.db.models import ApiToken, PublicKeyRecord, User

    with session_scope(engine) as session:
        dev_id = session.exec(select(User.id).where(User.username == "dev")).one()
        token_id = session.exec(select(ApiToken.id).where(ApiToken.user_id == dev_id)).first()
        key_id = session.exec(
            select(PublicKeyRecord.key_id).where(PublicKeyRecord.user_id == dev_id)
        ).one()
    eve = world["clients"]["eve"]
    assert key_id not in eve.get("/account").text
    assert post_form(eve, "/account", f"/account/tokens/{token_id}/revoke", {}).status_code == 404
    assert post_form(eve, "/account", f"/account/keys/{key_id}/revoke", {}).status_code == 404
    with session_scope(engine) as session:
        assert session.get(ApiToken, token_id).revoked_at is None  # type: ignore[union-attr]


def test_log_entries_of_others_stay_hidden(world: dict[str, Any], app: Any) -> None:
    app.state.ledger.integrate_now()
    eve, dev = world["clients"]["eve"], world["clients"]["dev"]
    listing = dev.get("/transparency", params={"action": "attestation.submitted"}).text
    index = re.findall(r"/transparency/entries/(\d+)", listing)[0]
    assert "not yours to read" not in dev.get(f"/transparency/entries/{index}").text
    assert "not yours to read" in eve.get(f"/transparency/entries/{index}").text
    assert "attestation.submitted" not in eve.get("/transparency").text
    assert eve.get(f"/transparency/receipts/{index}").status_code == 403
    assert dev.get(f"/transparency/receipts/{index}").status_code == 200


def test_pending_releases_stay_inside_their_org(
    app: Any,
    engine: Engine,
    browser_client: Callable[[], TestClient],
    web_account: Callable[..., Account],
) -> None:
    from gateway.db.engine import session_scope
    from gateway.db.models import Org, Release, User
    from gateway.db.timeutil import utcnow

    web_account("pat", "publisher", "acme")
    web_account("eve")
    with session_scope(engine) as session:
        org = session.exec(select(Org)).one()
        user = session.exec(select(User).where(User.username == "pat")).one()
        session.add(
            Release(
                org_id=org.id,
                name="secret",
                version="0.1",
                repo_id="acme/secret",
                status="pending",
                statement_envelope="{}",
                statement_digest="0" * 64,
                signer_key_id="k",
                model_card="# s",
                policy_json="{}",
                created_by=user.id,
                created_at=utcnow(),
            )
        )
    pat, eve = sign_in(browser_client(), "pat"), sign_in(browser_client(), "eve")
    assert "acme/secret" in pat.get("/").text
    assert "acme/secret" not in eve.get("/").text
    assert eve.get("/models/acme/secret/v/0.1").status_code == 404
