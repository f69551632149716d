"""A small evaluation task (six multiple-choice documents in a JSONL file) and a run helper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from release.evals.runner import RunOutcome, RunSettings, run_evaluation
from release.evals.task import EvalDoc, EvalTask, data_sha256, load_task, resolve_docs
from tests.conftest import Account
from tests.gateway.generation_fixtures import MODEL

LABELS = ["A", "B", "C", "D"]


def small_docs(count: int = 6) -> list[EvalDoc]:
    words = ["assert", "lambda", "yield", "class", "import", "return", "while", "global"]
    return [
        EvalDoc(
            id=f"doc-{i}",
            fields={"word": words[i % len(words)], "options": "A. one\nB. two\nC. three"},
            target=LABELS[i % 3],
        )
        for i in range(count)
    ]


def write_task(folder: Path, docs: list[EvalDoc] | None = None, **overrides: Any) -> Path:
    docs = small_docs() if docs is None else docs
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in docs), encoding="utf-8")
    task = {
        "format": "tiergate-eval-task/v1",
        "name": "tiny-mc",
        "version": "1",
        "kind": "multiple_choice",
        "source": {"path": "docs.jsonl"},
        "data_sha256": data_sha256(docs),
        "prompt_template": "Word: $word\n$options\nAnswer:",
        "metric": "choice_letter",
        "max_tokens": 2,
        "choices": ["A", "B", "C"],
        "pass_criteria": {"minimum": "0.2", "statistic": "score"},
        **overrides,
    }
    path = folder / "task.json"
    path.write_text(json.dumps(task), encoding="utf-8")
    return path


def small_task(folder: Path) -> tuple[EvalTask, list[EvalDoc]]:
    task = load_task(write_task(folder))
    return task, resolve_docs(task)


def run_as(
    client: TestClient,
    account: Account,
    task: EvalTask,
    docs: list[EvalDoc],
    journal: Path,
    **kw: Any,
) -> RunOutcome | None:
    client.headers.update(account.headers)
    try:
        return run_evaluation(
            client, task, docs, RunSettings(MODEL, concurrency=2), journal, show_bar=False, **kw
        )
    finally:
        client.headers.pop("Authorization", None)
