"""`tiergate audit safety`: a publisher shows an auditor, from the signed log alone, what the
safety layer did to every output of a release and what happened to every report about it."""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from gateway.services.safety_audit import LogAuditFailed, audit_safety, read_verified_entries
from safety.findings import Check
from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import BuiltRelease, publish, sign_release
from tests.gateway.generation_fixtures import REPO_ID, build_generation_model
from tests.safety.fakes import TermCheck

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

VERSION = "1.6.0"
POLICY = {
    "checks": ["wordlist"],
    "rules": {"*": {"action": "annotate"}, "profanity": {"action": "redact"}},
    "hold_back_chars": 8,
    "on_check_failure": "closed",
}


@functools.cache
def _release() -> BuiltRelease:
    from safety.policy import parse_policy

    root = Path(tempfile.mkdtemp(prefix="tiergate-audit-"))
    return sign_release(
        build_generation_model(),
        root / "out",
        REPO_ID,
        VERSION,
        safety_policy=parse_policy(POLICY),
        optimize="bf16",
        check_tokenizer=False,
    )


def _use(app: Any, checks: dict[str, Check]) -> None:
    app.state.generation.safety.check_factory = checks.__getitem__


def _post(server: LiveServer, account: Account, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{server.url}{path}", json=body, headers=account.headers, timeout=120)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _audit(server: LiveServer, token: str, *extra: str) -> dict[str, Any]:
    from gateway.cli.main import cli

    vkey = httpx.get(f"{server.url}/log/vkey", timeout=30).text
    where = ("--gateway", server.url, "--token", token, "--vkey", vkey)
    result = CliRunner().invoke(cli, ["audit", "safety", f"{REPO_ID}@{VERSION}", *where, *extra])
    assert result.exit_code == 0, result.output
    if "--json" not in extra:
        return {"text": result.output}
    found: dict[str, Any] = json.loads(result.output)
    return found


@SQLITE
def test_the_audit_shows_every_output_s_verdict_and_every_report_s_lifecycle(
    app: Any, live_server: LiveServer, make_account: Callable[..., Account]
) -> None:
    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=live_server.url, timeout=300) as http:
        publish(_release(), http, publisher)
    _use(app, {"wordlist": TermCheck({"e": "profanity"})})
    dev = make_account("dev")
    body = {"model": f"{REPO_ID}@{VERSION}", "prompt": "The release gateway", "max_tokens": 10}
    calls = [
        _post(live_server, dev, "/v1/completions", {**body, "n": 2, "seed": s}) for s in (1, 2)
    ]
    filed = _post(
        live_server,
        dev,
        "/api/reports",
        {
            "model": f"{REPO_ID}@{VERSION}",
            "category": "toxicity",
            "description": "It swore.",
            "quoted_output": calls[0]["choices"][0]["text"],
        },
    )
    _post(live_server, publisher, f"/api/reports/{filed['id']}/transitions", {"step": "triaged"})

    # The audit reads what a signed checkpoint covers, and the log is integrated in the
    # background (every 0.5 s): wait until the checkpoint covers the triage.
    for _ in range(600):
        audit = _audit(live_server, publisher.token, "--json")
        if [len(r["events"]) for r in audit["reports"]] == [2]:
            break
        time.sleep(0.1)
    assert audit["release"] == f"{REPO_ID}@{VERSION}"
    logged = {c["tiergate"]["log_index"] for c in calls}
    assert {o["log_index"] for o in audit["outputs"]} == logged
    assert len(audit["outputs"]) == 4  # two calls, two choices each
    for output in audit["outputs"]:
        assert output["policy_digest"].startswith("sha256:")
        assert output["applied"] == "redact"
        assert output["categories"] == ["profanity"]
        assert output["removed_sha256"]
        assert all(r.startswith("sha256:") for r in output["removed_sha256"])
    assert audit["unscanned_calls"] == []
    (report,) = audit["reports"]
    assert report["report_id"] == filed["id"]
    assert [e["step"] for e in report["events"]] == ["received", "triaged"]
    assert report["state"] == "triaged"
    assert report["verification"]["status"] == "verified"
    # The log keeps the deadline to the second; the API answers with microseconds.
    assert report["disclose_after"] == filed["disclose_after"][:19] + "Z"
    assert report["public_by_deadline"] is False

    # The human form says the same in a line and two tables.
    text = _audit(live_server, publisher.token)["text"]
    assert "4 scanned outputs, 1 reports" in text
    assert "redact 4" in text
    assert "received@" in text
    assert "triaged@" in text


@SQLITE
def test_an_altered_entry_fails_the_audit(
    live_server: LiveServer, make_account: Callable[..., Account]
) -> None:
    """Attack: a gateway that rewrites an entry it serves (an action softened to "none")."""
    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=live_server.url, timeout=300) as http:
        publish(_release(), http, publisher)
        vkey = http.get("/log/vkey").text

        def honest(path: str, params: Mapping[str, Any]) -> Any:
            response = http.get(path, params=dict(params) or None, headers=publisher.headers)
            return response.text if path == "/log/checkpoint" else response.json()

        # The log is integrated in the background (every 0.5 s): wait for a checkpoint that
        # covers the publish before auditing it.
        for _ in range(1200):
            checkpoint, entries = read_verified_entries(honest, vkey)
            if checkpoint.size > 0:
                break
            time.sleep(0.05)
        assert len(entries) == checkpoint.size > 0

        def lying(path: str, params: Mapping[str, Any]) -> Any:
            found = honest(path, params)
            if path == "/log/entries":
                first = found["entries"][0]
                first["entry"] = first["entry"].replace('"action":"', '"action":"x', 1)
            return found

        with pytest.raises(LogAuditFailed, match="does not hash to its leaf"):
            read_verified_entries(lying, vkey)


def _entry(index: int, action: str, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return index, {"index": index, "time": f"2026-01-0{index + 1}T00:00:00Z", "action": action,
                   "fields": fields}  # fmt: skip


def test_the_summary_counts_unscanned_calls_and_deadlines_from_entries() -> None:
    model = {"repo_id": REPO_ID, "version": VERSION}
    entries: list[tuple[int, dict[str, Any] | None]] = [
        _entry(0, "generation.completed", {"model": model, "call_id": "a", "outputs": [{}]}),
        _entry(1, "generation.completed", {"model": {**model, "version": "9"}, "outputs": []}),
        _entry(
            2,
            "report.received",
            {
                "report_id": 7,
                "model": f"{REPO_ID}@{VERSION}",
                "verification": {"status": "not_verified"},
                "disclose_after": "2026-02-01T00:00:00Z",
            },
        ),
        (3, None),  # not readable with this token
        _entry(4, "report.rewarded", {"report_id": 7, "step": "rewarded"}),
    ]
    audit = audit_safety(
        entries,
        repo_id=REPO_ID,
        version=VERSION,
        checkpoint_size=5,
        checkpoint_origin="test",
        now=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert audit.outputs == []
    assert audit.unscanned_calls == [0]
    assert audit.unreadable_entries == 1
    (report,) = audit.reports
    assert report.state == "received"
    assert report.rewarded is True
    assert report.public_by_deadline is True
    # Every version of the release when none is named.
    assert audit_safety(
        entries, repo_id=REPO_ID, version=None, checkpoint_size=5, checkpoint_origin="t",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    ).unscanned_calls == [0, 1]  # fmt: skip
