"""Gated access over HTTP: the request/review/grant journey, and every way an attestation fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.config import Settings
from gateway.db.engine import make_engine
from gateway.db.models import LogEntry
from gateway.db.timeutil import utcnow
from gateway.deps import get_now
from gateway.services import access, accounts, releases
from licensing.keys import PrivateKey
from licensing.statements import build_usage_attestation, sign_usage_attestation
from tests.conftest import Account
from tests.gateway.release_fixtures import PublishedRelease, publish_test_release
from tests.gateway.test_health_and_errors import assert_problem

MakeAccount = Callable[..., Account]
GOOD_FIELDS = {"org": "Example Labs", "use": "research", "country": "FR", "agree": "true"}


def attest(
    key: PrivateKey,
    release: PublishedRelease,
    account: str,
    *,
    now: datetime | None = None,
    **changes: Any,
) -> str:
    values: dict[str, Any] = {
        "repo_id": release.repo_id,
        "version": release.version,
        "release_digest": release.release_digest,
        "tier": "optimized",
        "accepted_terms_digest": release.terms_digest,
        "fields": GOOD_FIELDS,
        "requester_account": account,
        "requester_key_id": key.key_id,
        "now": now or utcnow(),
    }
    values.update(changes)
    return sign_usage_attestation(build_usage_attestation(**values), key).decode()


def submit(
    client: TestClient, who: Account, release: PublishedRelease, envelope: str, **body: Any
) -> Any:
    payload = {"repo_id": release.repo_id, "version": release.version, "attestation": envelope}
    payload.update(body)
    return client.post("/api/access/requests", json=payload, headers=who.headers)


def register(client: TestClient, who: Account, key_type: str = "ed25519") -> PrivateKey:
    key = PrivateKey.generate(key_type)  # type: ignore[arg-type]
    response = client.post(
        "/api/keys", json={"pem": key.public_key.to_pem().decode()}, headers=who.headers
    )
    assert response.status_code == 201, response.text
    return key


def actions(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [row.action for row in session.exec(select(LogEntry).order_by(LogEntry.idx))]


def test_journey_auto_manual_approve_deny_revoke(
    app: FastAPI,
    engine: Engine,
    client: TestClient,
    make_account: MakeAccount,
    tmp_path: Path,
) -> None:
    publisher = make_account("pub", "publisher", org="acme")
    dev = make_account("dev")
    other = make_account("other")
    auto = publish_test_release(app, engine, publisher, tmp_path, repo_id="acme/auto")
    manual = publish_test_release(
        app, engine, publisher, tmp_path, repo_id="acme/manual", mode="manual"
    )
    key = register(client, dev)

    terms = client.get("/api/access/terms/acme/manual").json()
    assert terms["release_digest"] == manual.release_digest
    assert terms["terms_digest"] == manual.terms_digest
    assert [f["name"] for f in terms["fields"]] == ["org", "use", "country", "agree"]

    granted = submit(client, dev, auto, attest(key, auto, "dev"))
    assert granted.status_code == 201, granted.text
    assert granted.json()["status"] == "approved"
    queued = submit(client, dev, manual, attest(key, manual, "dev")).json()
    assert queued["status"] == "pending"
    assert queued["grant_id"] is None

    # The requester sees their own, nobody else does (404, as for a missing id).
    mine = client.get("/api/access/requests", headers=dev.headers).json()
    assert {r["repo_id"] for r in mine} == {"acme/auto", "acme/manual"}
    assert client.get("/api/access/requests", headers=other.headers).json() == []
    assert client.get("/api/access/grants", headers=other.headers).json() == []
    for path in (f"/api/access/requests/{queued['id']}", f"/api/access/grants/{1}"):
        assert_problem(client.get(path, headers=other.headers), 404, "not_found")
    detail = client.get(f"/api/access/requests/{queued['id']}", headers=dev.headers).json()
    assert json.loads(detail["attestation"])["payloadType"] == "application/vnd.in-toto+json"
    # Developers cannot review, not even their own requests.
    assert_problem(
        client.post(f"/api/access/requests/{queued['id']}/approve", headers=dev.headers),
        403,
        "insufficient_scope",
    )

    pending = client.get(
        "/api/access/requests",
        params={"review": "true", "status": "pending"},
        headers=publisher.headers,
    ).json()
    assert [p["id"] for p in pending] == [queued["id"]]
    approved = client.post(
        f"/api/access/requests/{queued['id']}/approve", headers=publisher.headers
    )
    assert approved.status_code == 200, approved.text
    grant = approved.json()
    assert (grant["decision"], grant["decided_by"], grant["state"]) == ("manual", "pub", "active")
    assert_problem(
        client.post(f"/api/access/requests/{queued['id']}/approve", headers=publisher.headers),
        409,
        "request_already_decided",
    )

    second = submit(client, dev, manual, attest(key, manual, "dev")).json()
    denied = client.post(
        f"/api/access/requests/{second['id']}/deny",
        json={"reason": "commercial use is not covered"},
        headers=publisher.headers,
    )
    assert denied.status_code == 200, denied.text
    seen = client.get(f"/api/access/requests/{second['id']}", headers=dev.headers).json()
    assert (seen["status"], seen["reason"]) == ("denied", "commercial use is not covered")

    revoked = client.post(
        f"/api/access/grants/{grant['id']}/revoke",
        json={"reason": "terms breached"},
        headers=publisher.headers,
    )
    assert revoked.json()["state"] == "revoked"
    with Session(engine) as session:
        principal = accounts.authenticate(session, dev.token, now=utcnow())
        release = releases.find_release(session, "acme/manual", "1.0.0", viewer=principal)
        assert access.active_grant(session, principal, release, "optimized", utcnow()) is None
        auto_release = releases.find_release(session, "acme/auto", "1.0.0", viewer=principal)
        live = access.active_grant(session, principal, auto_release, "optimized", utcnow())
        assert live is not None
        # Expiry needs no job: the same grant is simply not active an hour later.
        later = utcnow() + timedelta(hours=2)
        assert access.active_grant(session, principal, auto_release, "optimized", later) is None
    logged = actions(engine)
    for action in ("attestation.submitted", "grant.approved", "grant.denied", "grant.revoked"):
        assert action in logged


def test_a_publisher_acts_only_on_their_own_orgs_requests(
    app: FastAPI, engine: Engine, client: TestClient, make_account: MakeAccount, tmp_path: Path
) -> None:
    publisher = make_account("pub", "publisher", org="acme")
    rival = make_account("rival", "publisher", org="rivalco")
    dev = make_account("dev")
    release = publish_test_release(app, engine, publisher, tmp_path, mode="manual")
    key = register(client, dev)
    queued = submit(client, dev, release, attest(key, release, "dev")).json()
    base = f"/api/access/requests/{queued['id']}"
    assert_problem(client.post(f"{base}/approve", headers=rival.headers), 404, "not_found")
    deny = client.post(f"{base}/deny", json={"reason": "x"}, headers=rival.headers)
    assert_problem(deny, 404, "not_found")
    assert (
        client.get("/api/access/requests", params={"review": "true"}, headers=rival.headers).json()
        == []
    )
    grant = client.post(f"{base}/approve", headers=publisher.headers).json()
    revoke = client.post(
        f"/api/access/grants/{grant['id']}/revoke", json={"reason": "x"}, headers=rival.headers
    )
    assert_problem(revoke, 404, "not_found")
    policy = f"/api/access/policies/{release.repo_id}/1.0.0/optimized"
    assert_problem(client.get(policy, headers=rival.headers), 404, "not_found")


def test_attestation_failures_are_typed_problems(
    app: FastAPI, engine: Engine, client: TestClient, make_account: MakeAccount, tmp_path: Path
) -> None:
    publisher = make_account("pub", "publisher", org="acme")
    dev = make_account("dev")
    release = publish_test_release(app, engine, publisher, tmp_path)
    other = publish_test_release(app, engine, publisher, tmp_path, repo_id="acme/other")
    no_key = submit(client, dev, release, attest(PrivateKey.generate("ed25519"), release, "dev"))
    assert_problem(no_key, 422, "no_registered_key")
    key = register(client, dev)
    stranger = PrivateKey.generate("ed25519")
    now = utcnow()
    cases: list[tuple[str, int, str]] = [
        (attest(stranger, release, "dev"), 422, "attestation_signature_invalid"),
        (
            attest(key, release, "dev", release_digest=other.release_digest),
            422,
            "attestation_wrong_subject",
        ),
        (
            attest(key, release, "dev", accepted_terms_digest="0" * 64),
            422,
            "attestation_stale_terms",
        ),
        (attest(key, release, "dev", now=now - timedelta(hours=2)), 422, "attestation_expired"),
        (attest(key, release, "dev", now=now - timedelta(minutes=30)), 422, "attestation_too_old"),
        (
            attest(key, release, "dev", now=now + timedelta(hours=1)),
            422,
            "attestation_not_yet_valid",
        ),
        (
            attest(key, release, "dev", lifetime_seconds=3 * 86400),
            422,
            "attestation_lifetime_too_long",
        ),
        (attest(key, release, "someone-else"), 422, "attestation_wrong_account"),
        (attest(key, release, "dev", tier="open"), 422, "attestation_wrong_tier"),
        (
            attest(key, release, "dev", fields={**GOOD_FIELDS, "org": ""}),
            422,
            "attestation_missing_field",
        ),
        (
            attest(key, release, "dev", fields={**GOOD_FIELDS, "use": "weapons"}),
            422,
            "attestation_field_invalid",
        ),
        (
            attest(key, release, "dev", fields={**GOOD_FIELDS, "country": "XX"}),
            422,
            "attestation_field_invalid",
        ),
        (
            attest(key, release, "dev", fields={**GOOD_FIELDS, "agree": "false"}),
            422,
            "attestation_field_invalid",
        ),
        (
            attest(key, release, "dev", fields={**GOOD_FIELDS, "extra": "x"}),
            422,
            "attestation_field_invalid",
        ),
        ("{not json", 422, "attestation_malformed"),
        ('{"payload": "' + "A" * 70000 + '"}', 413, "attestation_too_large"),
    ]
    for envelope, status, code in cases:
        assert_problem(submit(client, dev, release, envelope), status, code)
    # A forged signature: right key id, but the payload was edited after signing.
    signed = json.loads(attest(key, release, "dev"))
    signed["payload"] = signed["payload"][:-4] + (
        "AAAA" if signed["payload"][-4:] != "AAAA" else "BBBB"
    )
    assert_problem(
        submit(client, dev, release, json.dumps(signed)), 422, "attestation_signature_invalid"
    )
    # Asking for the open tier, or another release than the attestation names.
    open_tier = submit(client, dev, release, attest(key, release, "dev"), tier="open")
    assert_problem(open_tier, 422, "tier_not_gated")
    wrong = submit(client, dev, other, attest(key, release, "dev"))
    assert_problem(wrong, 422, "attestation_wrong_subject")

    envelope = attest(key, release, "dev")
    assert submit(client, dev, release, envelope).status_code == 201
    assert_problem(submit(client, dev, release, envelope), 409, "attestation_replayed")
    # A revoked key no longer verifies anything.
    client.delete(f"/api/keys/{key.key_id}", headers=dev.headers)
    assert_problem(
        submit(client, dev, release, attest(key, release, "dev")), 422, "no_registered_key"
    )
    assert "attestation.submitted" in actions(engine)


def test_policy_changes_are_versioned_and_decide(
    app: FastAPI, engine: Engine, client: TestClient, make_account: MakeAccount, tmp_path: Path
) -> None:
    publisher = make_account("pub", "publisher", org="acme")
    dev = make_account("dev")
    release = publish_test_release(app, engine, publisher, tmp_path)
    key = register(client, dev)
    url = f"/api/access/policies/{release.repo_id}/1.0.0/optimized"
    changed = client.put(
        url,
        json={
            "mode": "auto",
            "grant_lifetime_seconds": 120,
            "deny": {"country": ["KP"]},
            "max_grants": 1,
        },
        headers=publisher.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["policy_version"] == 2
    history = client.get(url, headers=publisher.headers).json()
    assert [h["policy_version"] for h in history] == [1, 2]
    assert history[0]["created_by"] is None  # from the signed statement

    denied = submit(
        client, dev, release, attest(key, release, "dev", fields={**GOOD_FIELDS, "country": "KP"})
    ).json()
    assert (denied["status"], denied["policy_version"]) == ("denied", 2)
    assert "KP" in denied["reason"]
    first = submit(client, dev, release, attest(key, release, "dev")).json()
    assert first["status"] == "approved"
    grant = client.get(f"/api/access/grants/{first['grant_id']}", headers=dev.headers).json()
    assert grant["policy_version"] == 2
    # The cap is reached: further requests wait for the publisher, who cannot exceed it.
    capped = submit(client, dev, release, attest(key, release, "dev")).json()
    assert capped["status"] == "pending"
    assert_problem(
        client.post(f"/api/access/requests/{capped['id']}/approve", headers=publisher.headers),
        409,
        "grant_limit_reached",
    )
    # Two minutes on, the grant has expired by itself and the cap has room again.
    app.dependency_overrides[get_now] = lambda: utcnow() + timedelta(minutes=3)
    try:
        listed = client.get("/api/access/grants", headers=dev.headers).json()
        assert [g["state"] for g in listed] == ["expired"]
        approved = client.post(
            f"/api/access/requests/{capped['id']}/approve", headers=publisher.headers
        )
        assert approved.status_code == 200, approved.text
    finally:
        app.dependency_overrides.clear()
    bad = client.put(
        url, json={"mode": "sometimes", "grant_lifetime_seconds": 120}, headers=publisher.headers
    )
    assert_problem(bad, 422, "validation_error")
    unknown = client.put(
        url,
        json={"mode": "auto", "grant_lifetime_seconds": 120, "allow": {"nope": ["x"]}},
        headers=publisher.headers,
    )
    assert_problem(unknown, 422, "validation_error")


def test_review_listing_needs_review_scope(client: TestClient, make_account: MakeAccount) -> None:
    narrow = make_account("narrow", "publisher", org="acme", scopes=frozenset({"read"}))
    response = client.get("/api/access/requests", params={"review": "true"}, headers=narrow.headers)
    assert_problem(response, 403, "insufficient_scope")


def test_replay_is_refused_by_another_gateway_process(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    client: TestClient,
    make_account: MakeAccount,
    tmp_path: Path,
) -> None:
    publisher = make_account("pub", "publisher", org="acme")
    dev = make_account("dev")
    release = publish_test_release(app, engine, publisher, tmp_path)
    key = register(client, dev)
    envelope = attest(key, release, "dev")
    # A second gateway on the same database shares nothing in memory with the first.
    second_engine = make_engine(settings.resolved_database_url)
    try:
        second_app = create_app(settings, engine=second_engine)
        with TestClient(second_app, raise_server_exceptions=False) as second:
            assert submit(second, dev, release, envelope).status_code == 201
        assert_problem(submit(client, dev, release, envelope), 409, "attestation_replayed")
    finally:
        second_engine.dispose()
