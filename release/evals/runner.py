"""The built-in runner: drive a task through a gateway's OpenAI-compatible API, resumably.

Every sample is a logged generation call naming the run and the document in its metadata.
The run is pre-registered before the first call and sealed after the last; a JSONL journal
records each answer as it arrives, so an interrupted run resumes where it stopped. A document
the gateway logged but the journal missed (killed between the two) is never asked again: its
first call is the one that counts, scored 0 without its text.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from licensing.tlog.checkpoint import parse_checkpoint
from licensing.tlog.note import parse_note
from licensing.tlog.receipt import parse_receipt
from release._progress import Progress
from release.errors import EvalRunError
from release.evals.attestation import SampleResult
from release.evals.logprobs import logprobs_digest, samples_digest
from release.evals.scoring import Aggregate, aggregate, passes, score_logprobs, score_output
from release.evals.task import EvalDoc, EvalTask
from release.evals.verify import BUNDLE_FORMAT, RUN_DOC_KEY, RUN_ID_KEY, counted_samples

__all__ = ["RunOutcome", "RunSettings", "run_evaluation"]

_MAX_PAGE = 1000


@dataclass(frozen=True)
class RunSettings:
    model: str  # ORG/NAME@VERSION[:tier]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    concurrency: int = 2


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    model: dict[str, str]  # name, repo_id, version, tier, release_digest (as pre-registered)
    preregistration_index: int
    seal_index: int
    checkpoint_note: str
    samples: list[SampleResult]
    result: Aggregate
    passed: bool
    bundle: dict[str, Any]
    asked: int  # calls made by this invocation (0 when a finished run is rebuilt)


def _check(response: httpx.Response, what: str) -> Any:
    if response.is_success:
        return response.json()
    try:
        body = response.json()
        detail = body.get("detail") or body.get("error", {}).get("message") or response.text
    except ValueError:
        detail = response.text
    raise EvalRunError(f"{what}: {str(detail)[:300]} (HTTP {response.status_code})")


class _Journal:
    """Append-only JSONL: a header, then one line per answered (or lost) document, fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.header: dict[str, Any] | None = None
        self.samples: dict[str, dict[str, Any]] = {}
        if path.exists():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    # A torn last line (killed mid-write) is dropped; the call it recorded
                    # shows up as logged-but-unjournaled and counts as lost.
                    continue
                if item.get("kind") == "run":
                    self.header = item
                elif item.get("kind") in ("sample", "lost"):
                    self.samples.setdefault(str(item["doc_id"]), item)
                else:
                    raise EvalRunError(f"{path} line {number} is not a run journal line")

    def append(self, item: dict[str, Any]) -> None:
        data = (json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self.lock:
            with self.path.open("ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if item.get("kind") == "run":
                self.header = item
            else:
                self.samples.setdefault(str(item["doc_id"]), item)


def _preregister(
    client: httpx.Client, task: EvalTask, docs: list[EvalDoc], settings: RunSettings
) -> dict[str, Any]:
    from release.evals.attestation import task_summary

    run_id = secrets.token_hex(16)
    body = {
        "run_id": run_id,
        "model": settings.model,
        "task": task_summary(task),
        "sampling": {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": task.max_tokens,
            "seed": settings.seed,
        },
        "documents": len(docs),
    }
    got = _check(client.post("/api/evaluations/runs", json=body), "pre-registering the run")
    return {
        "kind": "run",
        "run_id": run_id,
        "model": settings.model,
        "task_sha256": task.sha256,
        "preregistration_index": int(got["preregistration_index"]),
    }


def _score_choices(
    client: httpx.Client, task: EvalTask, doc: EvalDoc, settings: RunSettings, run_id: str
) -> dict[str, Any]:
    """``loglikelihood_acc``: one scoring call with a prompt per choice (nothing sampled)."""
    body = {
        "model": settings.model,
        "prompt": task.choice_prompts(doc),
        "max_tokens": 0,
        "echo": True,
        "logprobs": 1,
        "metadata": {RUN_ID_KEY: run_id, RUN_DOC_KEY: doc.id},
    }
    got = _check(client.post("/v1/completions", json=body), f"scoring {doc.id}")
    choices = sorted(got["choices"], key=lambda c: int(c["index"]))
    return {
        "kind": "sample",
        "doc_id": doc.id,
        "log_index": int(got["tiergate"]["log_index"]),
        "call_id": got["id"],
        "logprobs": [c["logprobs"] for c in choices],
    }


def ask_document(
    client: httpx.Client, task: EvalTask, doc: EvalDoc, settings: RunSettings, run_id: str
) -> dict[str, Any]:
    """One logged call for ``doc``, tagged with the run; its journal line."""
    if task.metric == "loglikelihood_acc":
        return _score_choices(client, task, doc, settings, run_id)
    return _ask(client, task, doc, settings, run_id)


def _ask(
    client: httpx.Client, task: EvalTask, doc: EvalDoc, settings: RunSettings, run_id: str
) -> dict[str, Any]:
    body = {
        "model": settings.model,
        "prompt": task.prompt(doc),
        "max_tokens": task.max_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": settings.seed,
        "metadata": {RUN_ID_KEY: run_id, RUN_DOC_KEY: doc.id},
    }
    got = _check(client.post("/v1/completions", json=body), f"asking about {doc.id}")
    return {
        "kind": "sample",
        "doc_id": doc.id,
        "log_index": int(got["tiergate"]["log_index"]),
        "call_id": got["id"],
        "output": got["choices"][0]["text"],
    }


def _evidence(
    client: httpx.Client, indices: list[int], first: int, last: int
) -> tuple[str, dict[str, Any]]:
    """The signed checkpoint covering ``last`` and each index's entry and inclusion proof."""
    got = _check(client.get(f"/log/receipt/{last}"), "fetching the log checkpoint")
    note = parse_receipt(got["receipt"]).checkpoint_note
    size = parse_checkpoint(parse_note(note).text).size
    wanted = set(indices)
    entries: dict[str, Any] = {}
    for start in range(first, last + 1, _MAX_PAGE):
        end = min(start + _MAX_PAGE, last + 1)
        page = _check(client.get("/log/entries", params={"start": start, "end": end}), "log")
        for item in page["entries"]:
            if item["index"] in wanted and item["entry"] is not None:
                entries[str(item["index"])] = {"entry": item["entry"]}
    for index in sorted(wanted):
        if str(index) not in entries:
            raise EvalRunError(f"the gateway does not show log entry {index} to this account")
        proof = _check(
            client.get("/log/proof/inclusion", params={"index": index, "size": size}),
            f"fetching the inclusion proof of {index}",
        )
        entries[str(index)]["proof"] = proof["inclusion_path"]
    return note, entries


def run_evaluation(
    client: httpx.Client,
    task: EvalTask,
    docs: list[EvalDoc],
    settings: RunSettings,
    journal_path: Path,
    *,
    show_bar: bool | None = None,
    stop_after: int | None = None,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
    ask_all: Callable[[Callable[[EvalDoc], dict[str, Any]]], None] | None = None,
) -> RunOutcome | None:
    """Run (or resume) the task; None when ``stop_after`` calls were made first (tests and
    ``--max-calls``: an interruption on purpose).

    ``ask_all`` replaces the built-in loop over the documents (a harness, such as lm-eval,
    that decides the requests): it gets the function that answers one document, asking the
    gateway once or returning the journaled answer."""
    journal = _Journal(journal_path)
    if journal.header is None:
        journal.append(_preregister(client, task, docs, settings))
    header = journal.header
    assert header is not None
    if header.get("task_sha256") != task.sha256 or header.get("model") != settings.model:
        raise EvalRunError(f"journal {journal_path} belongs to another task or model")
    run_id = str(header["run_id"])
    run = _check(client.get(f"/api/evaluations/runs/{run_id}"), "reading the run")
    asked = 0
    if run["state"] == "open":
        for doc_id, index in counted_samples((d, i) for d, i in run["samples"]).items():
            if doc_id not in journal.samples:
                journal.append({"kind": "lost", "doc_id": doc_id, "log_index": index})
        todo = [d for d in docs if d.id not in journal.samples]
        if stop_after is not None:
            todo = todo[:stop_after]
        with Progress(len(docs), desc=f"eval {task.name}", unit="doc", show_bar=show_bar) as bar:
            bar.advance(len(docs) - len(todo))
            allowed = {d.id for d in todo}

            def one(doc: EvalDoc) -> dict[str, Any]:
                """The document's answer: journaled already (resumed), or asked now."""
                done = journal.samples.get(doc.id)
                if done is not None or doc.id not in allowed:
                    return done or {"kind": "skipped", "doc_id": doc.id}
                item = ask_document(client, task, doc, settings, run_id)
                journal.append(item)
                bar.advance(1)
                if on_sample is not None:
                    on_sample(item)
                return item

            if ask_all is not None:
                ask_all(one)
            else:
                with ThreadPoolExecutor(max_workers=max(1, settings.concurrency)) as pool:
                    for future in [pool.submit(one, doc) for doc in todo]:
                        future.result()
        asked = len(todo)
        if any(d.id not in journal.samples for d in docs):
            return None
        run = _check(client.post(f"/api/evaluations/runs/{run_id}/seal"), "sealing the run")
    seal_index = int(run["seal_index"])
    prereg_index = int(run["preregistration_index"])
    counted = counted_samples((d, i) for d, i in run["samples"])
    samples = []
    outputs: dict[str, str] = {}
    logprobs: dict[str, list[Any]] = {}
    for doc in docs:
        if doc.id not in counted:
            raise EvalRunError(f"the sealed run has no call for {doc.id}")
        index = counted[doc.id]
        item = journal.samples.get(doc.id, {})
        same_call = item.get("log_index") == index
        if task.metric == "loglikelihood_acc":
            wires = item.get("logprobs") if same_call else None
            if wires is None:
                samples.append(SampleResult(index, doc.id, None, 0))
                continue
            logprobs[str(index)] = wires
            digest = samples_digest([logprobs_digest(w) for w in wires])
            samples.append(SampleResult(index, doc.id, digest, score_logprobs(task, doc, wires)))
            continue
        text = item.get("output") if same_call else None
        if text is None:
            samples.append(SampleResult(index, doc.id, None, 0))
            continue
        outputs[str(index)] = text
        digest = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        samples.append(SampleResult(index, doc.id, digest, score_output(task, doc, text)))
    indices = [prereg_index, seal_index, *counted.values()]
    note, entries = _evidence(client, indices, prereg_index, seal_index)
    prereg_entry = json.loads(entries[str(prereg_index)]["entry"])
    result = aggregate([s.score for s in samples])
    bundle = {
        "format": BUNDLE_FORMAT,
        "checkpoint": note,
        "entries": entries,
        "outputs": outputs,
    }
    if logprobs:
        bundle["logprobs"] = logprobs
    return RunOutcome(
        run_id=run_id,
        model={k: str(v) for k, v in prereg_entry["fields"]["model"].items()},
        preregistration_index=prereg_index,
        seal_index=seal_index,
        checkpoint_note=note,
        samples=samples,
        result=result,
        passed=passes(task, result),
        bundle=bundle,
        asked=asked,
    )
