"""Evaluations through the gateway: pre-registration, logged samples, sealing, resuming, and
the offline verifier rejecting altered, dropped, cherry-picked and too-early samples."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.db.models import LogEntry
from licensing.keys import PrivateKey
from licensing.tlog.note import Verifier
from release.errors import EvalDataNotFoundError, EvalEvidenceError
from release.evals.attestation import (
    EvalAttestation,
    SampleResult,
    build_eval_statement,
    open_eval_attestation,
    sign_eval_statement,
)
from release.evals.runner import RunOutcome
from release.evals.scoring import aggregate, passes
from release.evals.task import EvalTask
from release.evals.verify import RUN_DOC_KEY, RUN_ID_KEY, verify_evaluation
from tests.conftest import Account
from tests.gateway.eval_fixtures import run_as, small_task
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401


def entries(engine: Engine, action: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.exec(
            select(LogEntry).where(LogEntry.action == action).order_by(col(LogEntry.idx))
        )
        return [json.loads(r.entry) for r in rows]


def vkey(client: TestClient) -> Verifier:
    return Verifier.from_vkey(client.get("/log/vkey").text.strip())


def sign(
    task: EvalTask,
    outcome: RunOutcome,
    key: PrivateKey,
    *,
    samples: list[SampleResult] | None = None,
    role: str = "third_party",
) -> EvalAttestation:
    samples = outcome.samples if samples is None else samples
    result = aggregate([s.score for s in samples])
    statement = build_eval_statement(
        task=task,
        run_id=outcome.run_id,
        model=outcome.model,
        preregistration_index=outcome.preregistration_index,
        seal_index=outcome.seal_index,
        checkpoint_note=outcome.checkpoint_note,
        samples=samples,
        result=result,
        passed=passes(task, result),
        ran_by={"role": role, "keyId": key.key_id},
    )
    envelope = sign_eval_statement(statement, key).to_json()
    return open_eval_attestation(envelope, [key.public_key])


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


def test_a_run_is_preregistered_logged_sealed_and_recomputed(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    tmp_path: Path,
    key: PrivateKey,
) -> None:
    dev = make_account("dev")
    task, docs = small_task(tmp_path / "task")
    outcome = run_as(client, dev, task, docs, tmp_path / "journal.jsonl")
    assert outcome is not None
    assert outcome.asked == len(docs)

    [prereg] = entries(engine, "evaluation.preregistered")
    assert prereg["fields"]["run_id"] == outcome.run_id
    assert prereg["fields"]["task"]["dataSha256"] == task.data_sha256
    assert prereg["fields"]["task"]["passCriteria"] == {"minimum": "0.2", "statistic": "score"}
    assert prereg["fields"]["sampling"]["temperature"] == "0.0"
    calls = entries(engine, "generation.completed")
    assert len(calls) == len(docs)
    for call in calls:  # every sample is a logged call naming the run, after the bar was set
        assert call["fields"]["metadata"][RUN_ID_KEY] == outcome.run_id
        assert prereg["index"] < call["index"] < outcome.seal_index
    [seal] = entries(engine, "evaluation.sealed")
    assert sorted(d for d, _ in seal["fields"]["samples"]) == sorted(d.id for d in docs)

    attestation = sign(task, outcome, key)
    verified = verify_evaluation(attestation, outcome.bundle, task, docs, [vkey(client)])
    assert verified.total == len(docs)
    assert verified.value == outcome.result.value
    assert verified.result == ("pass" if outcome.passed else "fail")
    assert attestation.statement.to_dict()["_type"] == "https://in-toto.io/Statement/v1"
    assert attestation.release_digest == outcome.model["release_digest"]


def test_an_interrupted_run_resumes_without_duplicate_samples(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    engine: Engine,
    tmp_path: Path,
    key: PrivateKey,
) -> None:
    dev = make_account("dev")
    task, docs = small_task(tmp_path / "task")
    journal = tmp_path / "journal.jsonl"
    assert run_as(client, dev, task, docs, journal, stop_after=2) is None
    run_id = json.loads(journal.read_text().splitlines()[0])["run_id"]
    # Killed after the gateway logged a call and before the journal recorded it.
    lost = docs[2]
    body = {
        "model": MODEL,
        "prompt": task.prompt(lost),
        "max_tokens": 2,
        "temperature": 0.0,
        "seed": 0,
        "metadata": {RUN_ID_KEY: run_id, RUN_DOC_KEY: lost.id},
    }
    assert client.post("/v1/completions", json=body, headers=dev.headers).status_code == 200

    outcome = run_as(client, dev, task, docs, journal)
    assert outcome is not None
    assert outcome.asked == len(docs) - 3  # neither the journaled nor the lost doc again
    calls = entries(engine, "generation.completed")
    asked = [c["fields"]["metadata"][RUN_DOC_KEY] for c in calls]
    assert sorted(asked) == sorted(d.id for d in docs)  # one call per document, no duplicate
    by_doc = {s.doc_id: s for s in outcome.samples}
    assert by_doc[lost.id].output_sha256 is None
    assert by_doc[lost.id].score == 0
    verify_evaluation(sign(task, outcome, key), outcome.bundle, task, docs, [vkey(client)])
    # Running it again rebuilds the same result from the sealed run, asking nothing.
    again = run_as(client, dev, task, docs, journal)
    assert again is not None
    assert again.asked == 0
    assert again.result == outcome.result


def test_the_verifier_rejects_altered_dropped_and_out_of_checkpoint_evidence(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    tmp_path: Path,
    key: PrivateKey,
) -> None:
    dev = make_account("dev")
    task, docs = small_task(tmp_path / "task")
    outcome = run_as(client, dev, task, docs, tmp_path / "journal.jsonl")
    assert outcome is not None
    log_key = [vkey(client)]

    def rejected(attestation: EvalAttestation, bundle: dict[str, Any]) -> str:
        with pytest.raises(EvalEvidenceError) as caught:
            verify_evaluation(attestation, bundle, task, docs, log_key)
        return caught.value.reason

    honest = sign(task, outcome, key)
    first = outcome.samples[0]

    # Alter one sample's output text: it is no longer the logged digest.
    bundle = copy.deepcopy(outcome.bundle)
    bundle["outputs"][str(first.log_index)] = "Z (altered)"
    assert rejected(honest, bundle) == "output"

    # Alter one logged entry: its inclusion proof no longer leads to the checkpoint.
    bundle = copy.deepcopy(outcome.bundle)
    item = bundle["entries"][str(first.log_index)]
    item["entry"] = item["entry"].replace('"max_tokens":2', '"max_tokens":3')
    assert rejected(honest, bundle) == "inclusion"

    # Claim a better score for one sample (re-signed): the recomputed score differs.
    flipped = [
        SampleResult(s.log_index, s.doc_id, s.output_sha256, 1 - s.score) if i == 0 else s
        for i, s in enumerate(outcome.samples)
    ]
    assert rejected(sign(task, outcome, key, samples=flipped), outcome.bundle) == "score"

    # Drop one sample (the attestation is re-signed, consistent with itself): the seal, a
    # logged fact, lists the call the attestation left out.
    dropped = sign(task, outcome, key, samples=outcome.samples[1:])
    assert rejected(dropped, outcome.bundle) == "samples"

    # Evidence named beyond the checkpoint (a log range that does not exist, or not yet
    # signed): the seal cited at an index the checkpoint does not cover.
    size = int(outcome.checkpoint_note.split("\n")[1])
    beyond = replace(outcome, seal_index=size + 5)
    bundle = copy.deepcopy(outcome.bundle)
    bundle["entries"][str(size + 5)] = bundle["entries"][str(outcome.seal_index)]
    assert rejected(sign(task, beyond, key), bundle) == "not_in_checkpoint"

    # A bundle of the wrong shape is our error, never a foreign one.
    bundle = copy.deepcopy(outcome.bundle)
    bundle["entries"][str(outcome.seal_index)] = {"entry": "{}", "proof": 7}
    assert rejected(honest, bundle) in ("inclusion", "malformed")

    # A checkpoint signed by another log key is not evidence.
    from licensing.tlog.note import Signer

    stranger = Signer.generate(log_key[0].name).verifier()
    with pytest.raises(EvalEvidenceError) as caught:
        verify_evaluation(honest, outcome.bundle, task, docs, [stranger])
    assert caught.value.reason == "checkpoint"


def test_samples_logged_before_the_preregistration_are_rejected(
    client: TestClient,
    published: Account,
    make_account: Callable[..., Account],
    tmp_path: Path,
    key: PrivateKey,
) -> None:
    """The attack: sample first under a run id chosen in advance, look at the answers, and
    only then pre-register the bar under that id and cite the early samples."""
    dev = make_account("dev")
    task, docs = small_task(tmp_path / "task")
    run_id = "early-bird-run-0001"
    early: dict[str, tuple[int, str]] = {}
    for doc in docs:
        body = {
            "model": MODEL,
            "prompt": task.prompt(doc),
            "max_tokens": 2,
            "temperature": 0.0,
            "seed": 0,
            "metadata": {RUN_ID_KEY: run_id, RUN_DOC_KEY: doc.id},
        }
        got = client.post("/v1/completions", json=body, headers=dev.headers).json()
        early[doc.id] = (got["tiergate"]["log_index"], got["choices"][0]["text"])
    journal = tmp_path / "journal.jsonl"
    header = {
        "kind": "run",
        "run_id": run_id,
        "model": MODEL,
        "task_sha256": task.sha256,
        "preregistration_index": -1,
    }
    from release.evals.attestation import task_summary

    prereg = client.post(
        "/api/evaluations/runs",
        json={
            "run_id": run_id,
            "model": MODEL,
            "task": task_summary(task),
            "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 2, "seed": 0},
            "documents": len(docs),
        },
        headers=dev.headers,
    )
    assert prereg.status_code == 201, prereg.text
    journal.write_text(json.dumps(header) + "\n")
    # The honest runner would now ask every document again; the cheat cites the early ones.
    outcome = run_as(client, dev, task, docs, journal)
    assert outcome is not None
    from release.evals.scoring import score_output

    by_id = {d.id: d for d in docs}
    cheat = [
        SampleResult(
            index,
            doc_id,
            "sha256:" + hashlib.sha256(text.encode()).hexdigest(),
            score_output(task, by_id[doc_id], text),
        )
        for doc_id, (index, text) in early.items()
    ]
    bundle = copy.deepcopy(outcome.bundle)
    attestation = sign(task, outcome, key, samples=cheat)
    with pytest.raises(EvalEvidenceError) as caught:
        verify_evaluation(attestation, bundle, task, docs, [vkey(client)])
    assert caught.value.reason == "before_preregistration"
    # The run id cannot be pre-registered twice (the bar of a run is set once).
    again = client.post(
        "/api/evaluations/runs",
        json={
            "run_id": run_id,
            "model": MODEL,
            "task": task_summary(task),
            "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 2, "seed": 0},
            "documents": len(docs),
        },
        headers=dev.headers,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "evaluation_run_exists"


def test_a_task_whose_data_is_missing_fails_before_any_call(tmp_path: Path) -> None:
    from release.evals.task import load_task, resolve_docs
    from tests.gateway.eval_fixtures import write_task

    path = write_task(tmp_path / "task")
    (tmp_path / "task" / "docs.jsonl").unlink()
    with pytest.raises(EvalDataNotFoundError):
        resolve_docs(load_task(path))
    other = write_task(tmp_path / "other", data_sha256="0" * 64)
    with pytest.raises(EvalDataNotFoundError, match="not the"):
        resolve_docs(load_task(other))


def test_call_metadata_is_bounded_as_openai_bounds_it(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    dev = make_account("dev")
    too_many = {f"k{i}": "v" for i in range(17)}
    for metadata in (too_many, {"k" * 65: "v"}, {"k": "v" * 513}, {"k": 1}):
        got = client.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": "x", "metadata": metadata},
            headers=dev.headers,
        )
        assert got.status_code == 422, metadata


def test_runs_are_private_to_their_account(
    client: TestClient, published: Account, make_account: Callable[..., Account], tmp_path: Path
) -> None:
    from release.evals.attestation import task_summary

    dev, other = make_account("dev"), make_account("eve")
    task, docs = small_task(tmp_path / "task")
    body = {
        "run_id": "a-private-run-000001",
        "model": MODEL,
        "task": task_summary(task),
        "sampling": {"temperature": 0.0, "max_tokens": 2},
        "documents": len(docs),
    }
    assert client.post("/api/evaluations/runs", json=body, headers=dev.headers).status_code == 201
    run = "/api/evaluations/runs/a-private-run-000001"
    assert client.get(run, headers=other.headers).status_code == 404
    assert client.post(run + "/seal", headers=other.headers).status_code == 404
    sealed = client.post(run + "/seal", headers=dev.headers)
    assert sealed.json()["state"] == "sealed"
    again = client.post(run + "/seal", headers=dev.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "evaluation_run_sealed"
    bad = {**body, "run_id": "short"}
    assert client.post("/api/evaluations/runs", json=bad, headers=dev.headers).status_code == 422
    wrong_task = {**body, "run_id": "a-private-run-000002", "task": {"name": "x"}}
    refused = client.post("/api/evaluations/runs", json=wrong_task, headers=dev.headers)
    assert refused.status_code == 422
