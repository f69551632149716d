"""Report spam limits, per-publisher disclosure windows, links to a yank or a new version, and
comments through the report API."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.db.timeutil import utcnow
from gateway.deps import get_now
from gateway.ledger.events import digest_of
from tests.conftest import Account, write_test_watermark_key
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401
from tests.gateway.test_reports import entries, report

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> object:
    """Small report budgets, so spam is refused after a handful."""
    from gateway.config import Settings

    made = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_level="warning",
        rate_limit_reports_per_account=3,
        rate_limit_reports_per_address=5,
    )
    write_test_watermark_key(made.resolved_keys_dir)
    return made


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_report_spam_is_refused_per_account_and_per_address(
    app: FastAPI,
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    spammer, neighbour = make_account("spammer"), make_account("neighbour")
    # One instant for the whole test, so no window boundary can reset the counters mid-way.
    fixed = utcnow()
    app.dependency_overrides[get_now] = lambda: fixed
    # A refused report (too large) still counts: the budget is charged before any check.
    assert report(client, spammer, description="x" * 20_001).status_code == 413
    assert report(client, spammer).status_code == 201
    rid = report(client, spammer).json()["id"]
    over = report(client, spammer)
    assert over.status_code == 429, over.text
    assert over.json()["code"] == "rate_limited"
    assert int(over.headers["Retry-After"]) >= 1
    # Comments draw on the same budget.
    said = client.post(f"/api/reports/{rid}/comments", json={"text": "+1"}, **_h(spammer))
    assert said.status_code == 429
    # Another account behind the same address: its own budget, but the address's runs out
    # (5 per window; the spammer used 5 already, counting the refused ones).
    blocked = report(client, neighbour)
    assert blocked.status_code == 429, blocked.text
    assert len(entries(engine, "report.received")) == 2
    app.dependency_overrides.pop(get_now)


def _h(account: Account) -> dict[str, Any]:
    return {"headers": account.headers}


def test_a_publisher_sets_the_disclosure_window_of_its_reports(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    dev, rival = make_account("dev"), make_account("rival", "publisher", org="other")
    assert client.get("/api/orgs/acme/policy").json() == {
        "org": "acme",
        "report_disclosure_days": 90,
        "auditor_key": None,
        "auditor_key_id": None,
    }
    first = report(client, dev).json()
    assert _when(first["disclose_after"]) - _when(first["created_at"]) == timedelta(days=90)

    policy = "/api/orgs/acme/policy"
    for days in (6, 366, -1):
        bad = client.put(policy, json={"report_disclosure_days": days}, **_h(published))
        assert bad.status_code == 422, bad.text
        assert bad.json()["code"] == "disclosure_window_invalid"
    assert client.put(policy, json={"report_disclosure_days": 30}, **_h(rival)).status_code == 403
    assert client.put(policy, json={"report_disclosure_days": 30}, **_h(dev)).status_code == 403
    assert client.put("/api/orgs/nope/policy", json={}, **_h(published)).status_code == 404
    set_ = client.put(policy, json={"report_disclosure_days": 30}, **_h(published))
    assert set_.status_code == 200, set_.text
    assert set_.json()["report_disclosure_days"] == 30

    second = report(client, dev).json()
    assert _when(second["disclose_after"]) - _when(second["created_at"]) == timedelta(days=30)
    # The first report keeps the deadline it was filed under.
    again = client.get(f"/api/reports/{first['id']}", **_h(dev)).json()
    assert again["disclose_after"] == first["disclose_after"]
    [logged] = entries(engine, "publisher.policy_updated")
    assert logged["fields"]["report_disclosure_days"] == 30
    received = entries(engine, "report.received")[-1]
    assert received["fields"]["disclose_after"] == second["disclose_after"][:19] + "Z"


def test_reports_link_to_a_yank_and_a_version_shown_on_the_report_and_its_export(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    dev = make_account("dev")
    rid = report(client, dev).json()["id"]
    links = f"/api/reports/{rid}/links"
    version = "1.0.0"

    refused = [
        (client.post(links, json={"kind": "yank", "version": version}, **_h(dev)), 403),
        (client.post(links, json={"kind": "fork", "version": version}, **_h(published)), 422),
        # Not yanked yet: a yank link must name a yanked version.
        (client.post(links, json={"kind": "yank", "version": version}, **_h(published)), 422),
        (client.post(links, json={"kind": "version", "version": "9.9.9"}, **_h(published)), 404),
    ]
    for got, status in refused:
        assert got.status_code == status, got.text
    assert refused[1][0].json()["code"] == "report_link_invalid"
    assert refused[2][0].json()["code"] == "report_link_invalid"

    linked = client.post(links, json={"kind": "version", "version": version}, **_h(published))
    assert linked.status_code == 200, linked.text
    again = client.post(links, json={"kind": "version", "version": version}, **_h(published))
    assert again.status_code == 409
    assert again.json()["code"] == "report_link_exists"

    yanked = client.post(
        f"/api/releases/{MODEL.replace('@', '/')}/yank",
        json={"reason": "stereotypes a group (report)"},
        **_h(published),
    )
    assert yanked.status_code == 200, yanked.text
    # Yanked now: no longer a version to point people to, but a yank to link.
    stale = client.post(links, json={"kind": "yank", "version": "1.0.0"}, **_h(dev))
    assert stale.status_code == 403
    done = client.post(links, json={"kind": "yank", "version": version}, **_h(published))
    assert done.status_code == 200, done.text

    seen = client.get(f"/api/reports/{rid}", **_h(dev)).json()
    logged = entries(engine, "report.linked")
    assert [(x["kind"], x["version"]) for x in seen["links"]] == [
        ("version", version),
        ("yank", version),
    ]
    assert [x["log_index"] for x in seen["links"]] == _indexes(engine, "report.linked")
    assert [e["fields"]["kind"] for e in logged] == ["version", "yank"]
    assert all(e["resource"] == f"report:{rid}" for e in logged)

    avid = client.get(f"/api/reports/{rid}/avid", **_h(dev)).json()
    refs = avid["references"]
    assert [r["label"].split(":")[0] for r in refs] == ["addressed in new version", "yanked"]
    assert refs[1]["url"].endswith(f"/api/releases/acme/chatty/{version}")
    assert refs[0]["type"] == "source"


def _indexes(engine: Engine, action: str) -> list[int]:
    from sqlmodel import Session, col, select

    from gateway.db.models import LogEntry

    with Session(engine) as session:
        rows = session.exec(select(LogEntry.idx).where(col(LogEntry.action) == action))
        return sorted(rows)


def test_comments_follow_the_report_s_visibility_and_are_logged_by_digest(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
) -> None:
    dev, stranger = make_account("dev"), make_account("stranger")
    rid = report(client, dev).json()["id"]
    comments = f"/api/reports/{rid}/comments"
    assert client.post(comments, json={"text": "me?"}, **_h(stranger)).status_code == 404
    too_long = client.post(comments, json={"text": "x" * 10_001}, **_h(dev))
    assert too_long.status_code == 413
    assert too_long.json()["code"] == "report_too_large"
    assert client.post(comments, json={"text": "  "}, **_h(published)).status_code == 422
    made = client.post(comments, json={"text": "We are looking into it."}, **_h(published))
    assert made.status_code == 201, made.text
    assert made.json()["author"] == "pat"
    [logged] = entries(engine, "report.commented")
    assert logged["fields"]["text_sha256"] == digest_of("We are looking into it.")
    assert "looking" not in json.dumps(logged)
    [seen] = client.get(f"/api/reports/{rid}", **_h(dev)).json()["comments"]
    assert seen["text"] == "We are looking into it."
