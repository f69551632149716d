"""Flaw and bias reports through the HTTP API: verification against the log, the lifecycle
as log events, visibility and the disclosure deadline, and what a reporter cannot learn."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.db.models import GenerationCall, LogEntry
from gateway.db.timeutil import utcnow
from gateway.deps import get_now
from licensing.tlog.merkle import leaf_hash
from tests.conftest import Account, LiveServer, write_test_watermark_key
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

SECRET_PROMPT = "The confidential merger codename is"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> object:
    """The log keeps prompts and outputs as text here: the hardest case for leaking them."""
    from gateway.config import Settings

    made = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_level="warning",
        generation_retain_plaintext=True,
    )
    write_test_watermark_key(made.resolved_keys_dir)
    return made


def generate(client: TestClient, account: Account, tokens: int = 120) -> dict[str, Any]:
    response = client.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": SECRET_PROMPT, "max_tokens": tokens, "seed": tokens},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def report(client: TestClient, account: Account, **body: Any) -> Any:
    body.setdefault("model", MODEL)
    body.setdefault("category", "bias")
    body.setdefault("description", "The model stereotypes a group.")
    return client.post("/api/reports", json=body, headers=account.headers)


def step(client: TestClient, account: Account, report_id: int, **body: Any) -> Any:
    return client.post(f"/api/reports/{report_id}/transitions", json=body, headers=account.headers)


def entries(engine: Engine, prefix: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.exec(
            select(LogEntry)
            .where(col(LogEntry.action).startswith(prefix))
            .order_by(col(LogEntry.idx))
        )
        return [json.loads(r.entry) for r in rows]


def test_an_exact_quote_is_verified_by_digest_with_an_inclusion_proof(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev = make_account("dev")
    made = generate(client, dev)
    text = made["choices"][0]["text"]

    sent = report(client, dev, quoted_output=text, call_id=made["id"])
    assert sent.status_code == 201, sent.text
    got = sent.json()
    check = got["verification"]
    assert check["status"] == "verified"
    assert check["method"] == "output_digest"
    assert check["call_id"] == made["id"]
    assert check["log_index"] == made["tiergate"]["log_index"]
    assert check["statement"] == f"genuine output of {MODEL}, logged call {check['log_index']}"
    avid = client.get(f"/api/reports/{got['id']}/avid", headers=dev.headers).json()
    [metric] = avid["metrics"]
    assert metric["results"]["log_index"] == check["log_index"]
    assert metric["detection_method"]["name"] == "sha256 digest"
    assert avid["credit"] == [{"lang": "eng", "value": "dev"}]
    assert client.get(f"/api/reports/{got['id']}/avid").status_code == 404  # not public yet
    proof = check["inclusion_proof"]
    assert proof is not None
    assert proof["index"] == check["log_index"]
    with Session(engine) as session:
        row = session.get(LogEntry, check["log_index"])
        assert row is not None
        assert leaf_hash(row.entry.encode()).hex() == proof["leaf_hash"]
    assert got["state"] == "received"
    assert not got["public"]
    assert got["reporter"] == "dev"

    # The report is a log event: digests of the text, the verification outcome.
    [received] = entries(engine, "report.received")
    assert received["resource"] == f"report:{got['id']}"
    assert received["index"] == got["log_index"]
    assert received["fields"]["verification"]["status"] == "verified"
    assert "The model stereotypes" not in json.dumps(received)


def test_the_digest_lookup_uses_each_choices_indexed_digest_confirmed_by_the_entry(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    """Every logged choice carries its output digest (``generation_calls.text_sha256``, as in
    the entry); a quote is found through it, and a row pointing at an entry whose outputs do
    not carry the digest is not believed."""
    dev = make_account("dev")
    made, other = generate(client, dev), generate(client, dev, tokens=60)
    text = made["choices"][0]["text"]
    with Session(engine) as session:
        rows = session.exec(select(GenerationCall).order_by(col(GenerationCall.log_index)))
        digests = {(r.call_id, r.choice_index): r.text_sha256 for r in rows}
    logged = {e["fields"]["call_id"]: e["fields"] for e in entries(engine, "generation.")}
    for call in (made, other):
        outputs = logged[call["id"]]["outputs"]
        assert [digests[(call["id"], o["index"])] for o in outputs] == [
            o["sha256"] for o in outputs
        ]
        assert all(d is not None and d.startswith("sha256:") for d in digests.values())

    # Move the quote's digest from its own call's row to the other call's: the entry scan
    # of old would still find the right entry (it holds the digest and even the text); the
    # index now leads only to an entry that does not confirm it, so no digest match.
    with Session(engine) as session:
        mine = session.exec(
            select(GenerationCall).where(GenerationCall.call_id == made["id"])
        ).one()
        theirs = session.exec(
            select(GenerationCall).where(GenerationCall.call_id == other["id"])
        ).one()
        theirs.text_sha256, mine.text_sha256 = mine.text_sha256, None
        session.add_all([mine, theirs])
        session.commit()
    check = report(client, dev, quoted_output=text).json()["verification"]
    assert check.get("method") != "output_digest"
    assert check.get("call_id") != other["id"]


def test_an_edited_quote_is_verified_by_watermark(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    made = generate(client, dev, tokens=160)
    text = made["choices"][0]["text"]
    edited = "Look at this: " + text[: len(text) - 20]  # not the logged digest any more

    check = report(client, dev, quoted_output=edited).json()["verification"]
    assert check["status"] == "verified", check
    assert check["method"] == "watermark"
    assert check["call_id"] == made["id"]
    assert check["p_value"] < 1e-6


def test_a_fabricated_quote_is_not_verified_and_says_why(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    made = generate(client, dev)
    fake = (
        "As an AI model I believe that people from that region are lazy and cannot be trusted "
        "with money, which is why loans to them should always be refused by any sensible bank. "
        "This is simply a well known fact that everyone already agrees with, so no evidence is "
        "needed and anyone who disagrees is being naive about the world."
    )
    check = report(client, dev, quoted_output=fake, call_id=made["id"]).json()["verification"]
    assert check["status"] == "not_verified"
    assert check["statement"].startswith("not verified: ")
    assert "not a logged output" in check["reason"]
    assert "call_id" not in check
    assert "inclusion_proof" not in check

    # A real output claimed to come from another call is not verified either.
    other = generate(client, dev, tokens=60)
    text = made["choices"][0]["text"]
    wrong = report(client, dev, quoted_output=text, call_id=other["id"]).json()["verification"]
    assert wrong["status"] == "not_verified"

    # No quote: a report still stands, marked as unverified.
    bare = report(client, dev).json()["verification"]
    assert bare == {
        "status": "not_verified",
        "statement": "not verified: the report quotes no model output",
        "reason": "the report quotes no model output",
    }


def test_a_reporter_cannot_learn_another_users_call(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    """Attack: quoting (or guessing) someone else's output reveals nothing of their call."""
    victim, attacker = make_account("victim"), make_account("mallory")
    made = generate(client, victim)
    text = made["choices"][0]["text"]
    other_choice = generate(client, victim, tokens=40)["choices"][0]["text"]

    # The attacker somehow has the text: verified, but the answer holds only the log
    # entry's public facts, never the prompt, the requester or anything else logged.
    got = report(client, attacker, quoted_output=text)
    assert got.status_code == 201
    raw = got.text
    assert got.json()["verification"]["status"] == "verified"
    assert SECRET_PROMPT not in raw
    assert "victim" not in raw
    assert other_choice not in raw
    assert set(got.json()["verification"]) <= {
        "status", "method", "statement", "model", "call_id", "log_index", "time",
        "inclusion_proof", "output_sha256", "p_value", "tokens_scored",
    }  # fmt: skip

    # Naming the victim's call with a guess gives "not verified" and nothing more.
    guess = report(client, attacker, quoted_output="The merger codename is", call_id=made["id"])
    assert guess.json()["verification"]["status"] == "not_verified"
    assert SECRET_PROMPT not in guess.text
    assert text not in guess.text

    # The victim's report about the same text is invisible to the attacker until disclosed.
    own = report(client, victim, quoted_output=text).json()
    assert client.get(f"/api/reports/{own['id']}", headers=attacker.headers).status_code == 404
    listed = client.get("/api/reports", params={"model": "acme/chatty"}, headers=attacker.headers)
    assert [r["id"] for r in listed.json()] == [got.json()["id"], guess.json()["id"]]


def test_lifecycle_steps_are_logged_and_checked(
    client: TestClient, published: Account, make_account: Callable[..., Account], engine: Engine
) -> None:
    dev, stranger = make_account("dev"), make_account("eve", "publisher", org="evil")
    sent = report(client, dev, category="toxicity").json()
    rid = sent["id"]

    assert step(client, dev, rid, step="triaged").status_code == 403  # no publish scope
    assert step(client, stranger, rid, step="triaged").status_code == 404  # not their org
    bad = step(client, published, rid, step="fixed", version="1.0.0")
    assert bad.status_code == 409
    assert bad.json()["code"] == "report_transition_invalid"
    assert bad.json()["state"] == "received"
    assert step(client, published, rid, step="rewarded").status_code == 409
    assert step(client, published, rid, step="teleported").status_code == 422

    assert step(client, published, rid, step="triaged").json()["state"] == "triaged"
    assert step(client, published, rid, step="accepted", note="confirmed").status_code == 200
    no_version = step(client, published, rid, step="fixed")
    assert no_version.status_code == 422
    missing = step(client, published, rid, step="fixed", version="9.9.9")
    assert missing.status_code == 404
    fixed = step(client, published, rid, step="fixed", version="1.0.0").json()
    assert fixed["state"] == "fixed"
    assert fixed["fixed_version"] == "1.0.0"
    assert step(client, published, rid, step="rewarded").json()["rewarded"] is True
    assert step(client, published, rid, step="rewarded").status_code == 409  # once
    assert not fixed["public"]
    assert client.get(f"/api/reports/{rid}").status_code == 404  # anonymous, not yet
    done = step(client, published, rid, step="disclosed").json()
    assert done["public"]
    assert done["state"] == "disclosed"
    assert step(client, published, rid, step="triaged").status_code == 409

    # Disclosed: anyone reads it, without the reporter's name.
    seen = client.get(f"/api/reports/{rid}")
    assert seen.status_code == 200
    assert seen.json()["reporter"] is None
    avid = client.get(f"/api/reports/{rid}/avid").json()
    assert avid["data_type"] == "AVID"
    assert avid["affects"]["artifacts"] == [{"type": "Model", "name": MODEL}]
    assert avid["impact"]["avid"]["sep_view"] == ["E0301: Toxicity"]
    assert avid["metrics"] == []  # nothing quoted, nothing verified
    assert avid["credit"] == []  # the public does not learn who reported
    assert avid["description"] == {"lang": "eng", "value": "The model stereotypes a group."}
    log = entries(engine, "report.")
    assert [e["action"] for e in log] == [
        "report.received", "report.triaged", "report.accepted", "report.fixed",
        "report.rewarded", "report.disclosed",
    ]  # fmt: skip
    assert {e["resource"] for e in log} == {f"report:{rid}"}
    assert log[3]["fields"]["version"] == "1.0.0"
    assert log[2]["fields"]["note_sha256"].startswith("sha256:")
    assert "confirmed" not in json.dumps(log)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_disclosure_deadline_makes_a_report_public_when_read(
    app: FastAPI, client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev, other = make_account("dev"), make_account("other")
    rid = report(client, dev).json()["id"]
    assert client.get(f"/api/reports/{rid}", headers=other.headers).status_code == 404
    assert client.get(f"/api/reports/{rid}", headers=published.headers).status_code == 200

    later = utcnow() + timedelta(days=90, minutes=1)
    app.dependency_overrides[get_now] = lambda: later
    try:
        seen = client.get(f"/api/reports/{rid}")  # anyone (tokens have expired by then)
        assert seen.status_code == 200
        assert seen.json()["public"]
        assert seen.json()["state"] == "received"  # nobody acted: that is visible too
        assert [r["id"] for r in client.get("/api/reports?model=acme/chatty").json()] == [rid]
    finally:
        app.dependency_overrides.pop(get_now)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_reports_get_typed_errors(
    client: TestClient, published: Account, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"category": "rude"}, 422, "report_category_invalid"),
        ({"description": "x" * 20_001}, 413, "report_too_large"),
        ({"quoted_output": "y" * 100_001}, 413, "report_too_large"),
        ({"description": "   "}, 422, "validation_error"),
        ({"model": "acme/chatty@1.0.0:open"}, 422, "validation_error"),
        ({"model": "not a model"}, 422, "validation_error"),
        ({"model": "acme/nothing"}, 404, None),
        ({"extra": 1}, 422, None),
    ]
    for body, status, code in cases:
        got = report(client, dev, **body)
        assert got.status_code == status, (body, got.text)
        if code is not None:
            assert got.json()["code"] == code, got.text
    assert client.post("/api/reports", json={"model": MODEL}).status_code == 401
    assert client.get("/api/reports/999").status_code == 404
    assert client.get("/api/reports/999").json()["code"] == "report_not_found"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_submits_lists_and_steps_through_a_real_server(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from gateway.cli._client import GatewayRequestError
    from gateway.cli.main import cli

    dev = make_account("dev")
    made = generate(client, dev)
    quote = tmp_path / "quote.txt"
    quote.write_text(made["choices"][0]["text"], encoding="utf-8")
    where = ["--gateway", live_server.url]

    submitted = CliRunner().invoke(
        cli,
        ["report", "submit", MODEL, "--category", "bias", "--description", "stereotypes",
         "--quote-file", str(quote), *where, "--token", dev.token],
    )  # fmt: skip
    assert submitted.exit_code == 0, submitted.output
    index = made["tiergate"]["log_index"]
    assert f"genuine output of {MODEL}, logged call {index}" in submitted.output
    assert "report 1 on acme/chatty@1.0.0: received" in submitted.output

    stepped = CliRunner().invoke(
        cli, ["report", "step", "1", "triaged", *where, "--token", published.token]
    )
    assert stepped.exit_code == 0, stepped.output
    assert "triaged" in stepped.output
    refused = CliRunner().invoke(
        cli, ["report", "step", "1", "triaged", *where, "--token", published.token]
    )
    assert isinstance(refused.exception, GatewayRequestError)
    assert refused.exception.code == "report_transition_invalid"
    assert "it cannot become triaged" in str(refused.exception)

    listed = CliRunner().invoke(
        cli, ["report", "list", "acme/chatty", "--json", *where, "--token", dev.token]
    )
    assert listed.exit_code == 0, listed.output
    assert [(r["id"], r["state"]) for r in json.loads(listed.output)] == [(1, "triaged")]
