"""Evaluation attestations beside a release: how the signer decides what is shown, the
publisher's logged accept/reject, and `tiergate eval run` / `eval verify` end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.db.models import LogEntry
from licensing.keys import PrivateKey
from release.errors import EvalEvidenceError
from release.evals.attestation import build_eval_statement, sign_eval_statement
from release.evals.runner import RunOutcome
from tests.conftest import Account, LiveServer
from tests.gateway.eval_fixtures import run_as, small_task, write_task
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401

EVALUATIONS = "/api/releases/acme/chatty/1.0.0/evaluations"


def envelope(outcome: RunOutcome, task: Any, key: PrivateKey, role: str, **model: str) -> bytes:
    statement = build_eval_statement(
        task=task,
        run_id=outcome.run_id,
        model={**outcome.model, **model},
        preregistration_index=outcome.preregistration_index,
        seal_index=outcome.seal_index,
        checkpoint_note=outcome.checkpoint_note,
        samples=outcome.samples,
        result=outcome.result,
        passed=outcome.passed,
        ran_by={"role": role, "keyId": key.key_id},
    )
    return sign_eval_statement(statement, key).to_json()


def register(client: TestClient, account: Account, key: PrivateKey) -> None:
    got = client.post(
        "/api/keys",
        json={"pem": key.public_key.to_pem().decode(), "name": f"eval-{key.key_id[:8]}"},
        headers=account.headers,
    )
    assert got.status_code == 201, got.text


def submit(client: TestClient, account: Account, data: bytes) -> Any:
    return client.post(
        EVALUATIONS,
        content=data,
        headers={**account.headers, "Content-Type": "application/json"},
    )


def test_the_signer_decides_how_an_attestation_is_shown_and_the_publisher_decides(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    tmp_path: Path,
) -> None:
    dev = make_account("dev")
    task, docs = small_task(tmp_path / "task")
    outcome = run_as(client, dev, task, docs, tmp_path / "journal.jsonl")
    assert outcome is not None
    dev_key, publisher_key, stranger = (PrivateKey.generate() for _ in range(3))
    register(client, dev, dev_key)
    register(client, published, publisher_key)

    community = submit(client, dev, envelope(outcome, task, dev_key, "third_party"))
    assert community.status_code == 201, community.text
    assert community.json()["status"] == "community"
    twice = submit(client, dev, envelope(outcome, task, dev_key, "third_party"))
    assert twice.status_code == 409
    own = submit(client, published, envelope(outcome, task, publisher_key, "publisher"))
    assert own.json()["status"] == "publisher"
    # A key nobody registered, claiming to be the publisher: shown, never as the publisher's.
    claimed = submit(client, dev, envelope(outcome, task, stranger, "publisher"))
    assert claimed.status_code == 201, claimed.text
    assert claimed.json()["status"] == "unverified"
    assert claimed.json()["signer_key_id"] is None

    listed = client.get(EVALUATIONS).json()  # public, like the release itself
    assert [a["status"] for a in listed] == ["community", "publisher", "unverified"]
    assert listed[0]["score"] == outcome.result.value
    assert listed[0]["interval"] == [outcome.result.lower, outcome.result.upper]

    # The stored envelope is the submitted one: it still verifies under the signer's key.
    stored = client.get(f"{EVALUATIONS}/{community.json()['id']}").content
    from release.evals.attestation import open_eval_attestation

    assert open_eval_attestation(stored, [dev_key.public_key]).signer == dev_key.public_key

    decision = f"{EVALUATIONS}/{community.json()['id']}/decision"
    refused = client.post(decision, json={"decision": "accept"}, headers=dev.headers)
    assert refused.status_code == 403
    accepted = client.post(decision, json={"decision": "accept"}, headers=published.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    again = client.post(decision, json={"decision": "reject"}, headers=published.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "evaluation_decision_invalid"
    not_community = f"{EVALUATIONS}/{claimed.json()['id']}/decision"
    refused = client.post(not_community, json={"decision": "accept"}, headers=published.headers)
    assert refused.status_code == 409
    with Session(engine) as session:
        actions = [r.action for r in session.exec(select(LogEntry)) if "evaluation." in r.action]
    assert actions.count("evaluation.attested") == 3
    assert actions.count("evaluation.accepted") == 1

    # Endorsed attestations (the publisher's, and the accepted one) reach the AI BOM and the
    # Hub listing; the unverified one does neither.
    cdx = client.get("/api/releases/acme/chatty/1.0.0/aibom.cdx.json").json()
    [open_tier] = [c for c in cdx["components"] if c.get("bom-ref") == "tier:open"]
    metrics = open_tier["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    assert {m["type"]: m["value"] for m in metrics}["tiny-mc@1.accuracy"] == outcome.result.value
    tree = {e["path"] for e in client.get("/api/models/acme/chatty/tree/main/evaluations").json()}
    listed_files = {p for p in tree if p.startswith("evaluations/")}
    assert listed_files == {
        f"evaluations/{community.json()['digest'][:16]}.intoto.json",
        f"evaluations/{own.json()['digest'][:16]}.intoto.json",
    }

    # The release page shows every attestation but rejected ones, each as what it is.
    page = client.get("/models/acme/chatty/v/1.0.0").text
    assert "Evaluations" in page
    assert "accepted (community)" in page
    assert "unverified signature" in page
    assert outcome.result.value in page

    # An attestation about another release is refused.
    other = envelope(outcome, task, dev_key, "third_party", release_digest="ab" * 32)
    wrong = submit(client, dev, other)
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "evaluation_attestation_invalid"


def test_eval_run_and_verify_on_the_command_line(
    published: Account,
    make_account: Callable[..., Account],
    live_server: LiveServer,
    client: TestClient,
    tmp_path: Path,
) -> None:
    from gateway.cli.main import cli

    dev = make_account("dev")
    key = PrivateKey.generate()
    key_file = tmp_path / "dev.pem"
    key_file.write_bytes(key.to_pem())
    pub_file = tmp_path / "dev.pub.pem"
    pub_file.write_bytes(key.public_key.to_pem())
    register(client, dev, key)
    task_file = write_task(tmp_path / "task")
    out = tmp_path / "run"
    where = ["--gateway", live_server.url, "--token", dev.token]
    ran = CliRunner().invoke(
        cli,
        ["eval", "run", "--task", str(task_file), "--model", MODEL, "--out", str(out),
         "--key", str(key_file), "--submit", "--json", *where],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["total"] == 6
    assert summary["stored"]["status"] == "community"

    vkey = client.get("/log/vkey").text.strip()
    args = ["eval", "verify", str(out / "attestation.dsse.json"), "--bundle",
            str(out / "bundle.json"), "--task", str(task_file), "--vkey", vkey]  # fmt: skip
    verified = CliRunner().invoke(cli, [*args, "--key", str(pub_file)])
    assert verified.exit_code == 0, verified.output
    assert f"score {summary['score']}" in verified.output
    assert "signature: verified" in verified.output

    bundle = json.loads((out / "bundle.json").read_text())
    index = next(iter(bundle["outputs"]))
    bundle["outputs"][index] = bundle["outputs"][index] + " (edited)"
    (out / "bundle.json").write_text(json.dumps(bundle))
    tampered = CliRunner().invoke(cli, args)
    assert isinstance(tampered.exception, EvalEvidenceError)
    assert tampered.exception.reason == "output"


def test_eval_compare_runs_open_and_optimized_on_the_same_task(
    published: Account,
    make_account: Callable[..., Account],
    live_server: LiveServer,
    engine: Engine,
    tmp_path: Path,
) -> None:
    from gateway.cli.main import cli
    from tests.gateway.download_fixtures import grant_access

    dev = make_account("dev")
    grant_access(engine, "dev", "acme/chatty", "1.0.0", "optimized")
    task_file = write_task(tmp_path / "task")
    compared = CliRunner().invoke(
        cli,
        ["eval", "compare", "--task", str(task_file), "--model", f"{MODEL}:open",
         "--model", f"{MODEL}:optimized", "--out", str(tmp_path / "runs"), "--json",
         "--gateway", live_server.url, "--token", dev.token],
    )  # fmt: skip
    assert compared.exit_code == 0, compared.output
    reference, optimized = json.loads(compared.stdout)
    assert (reference["tier"], optimized["tier"]) == ("open", "optimized")
    assert reference["difference"]["value"] == "0.000000"
    lower, upper = (float(x) for x in optimized["difference"]["interval"])
    value = float(optimized["difference"]["value"])
    assert lower <= value <= upper
    assert value == pytest.approx(float(optimized["score"]) - float(reference["score"]))
    assert optimized["run_id"] != reference["run_id"]  # one pre-registered run per tier
