"""Driving lm-evaluation-harness (``lm-eval``) through the gateway, every request a logged call.

lm-eval builds the requests from its own task configuration (``doc_to_text``, choices,
target delimiter, generation arguments) and computes its own metric; the gateway answers
them. Its task files are written here from a tiergate task (:func:`write_lmeval_task`): data
as a local JSON file (``dataset_path: json``), never from a hub.

The model lm-eval talks to is :class:`GatewayLM`, not its ``local-completions`` backend: that
backend cannot name the document a request belongs to (every call of a run must carry
``tiergate_eval_run`` and ``tiergate_eval_doc`` in its logged ``metadata``), asks for one
sampled token beside the prompt logprobs (``max_tokens: 1``), and batches requests of
different documents into one call. :class:`GatewayLM` makes one call per document with the
same ``/v1/completions`` request shape (all choices of a multiple-choice document in one
scoring call), so the run is sealed, attested and verified like a built-in run. lm-eval's
own metric is kept beside the attested score; the attested score is the one the verifier
recomputes (``loglikelihood_acc`` or the task's text metric).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from licensing.canonical import canonical_json
from release.errors import EvalHarnessUnavailableError, EvalRunError
from release.evals.logprobs import choice_loglikelihoods
from release.evals.task import EvalDoc, EvalTask

__all__ = [
    "HARNESS",
    "LmEvalTask",
    "harness_version",
    "make_gateway_lm",
    "run_lmeval",
    "write_lmeval_task",
]

HARNESS = "lm-eval"
_PLACEHOLDER = re.compile(r"\$(\w+)|\$\{(\w+)\}")
AskDocument = Callable[[EvalDoc], dict[str, Any]]


def harness_version() -> str:
    """The installed lm-eval's version; a clear error (before any call) when it is missing."""
    from importlib import metadata

    try:
        version = metadata.version("lm-eval")
        import lm_eval  # noqa: F401
    except (metadata.PackageNotFoundError, ImportError):
        raise EvalHarnessUnavailableError(
            "lm-evaluation-harness is not installed: pip install 'tiergate[eval]' (or 'lm-eval')"
        ) from None
    return version


@dataclass(frozen=True)
class LmEvalTask:
    name: str  # the lm-eval task name
    folder: Path  # its include path (the YAML and the data)
    config_sha256: str  # sha256 of the task configuration and its data file, canonical JSON


def _jinja(template: str) -> str:
    """A ``$field`` template as lm-eval's Jinja (``{{field}}``); fields are plain names."""
    if "{{" in template or "{%" in template:
        raise EvalRunError("the task's prompt template holds Jinja markup; lm-eval would run it")
    return _PLACEHOLDER.sub(lambda m: "{{" + (m.group(1) or m.group(2)) + "}}", template)


def write_lmeval_task(task: EvalTask, docs: list[EvalDoc], folder: Path) -> LmEvalTask:
    """lm-eval's task YAML and JSONL data for ``task`` in ``folder`` (one multiple-choice
    task scored by loglikelihood, or one ``generate_until`` task)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = "tiergate_" + re.sub(r"[^A-Za-z0-9_]", "_", task.name)
    rows = []
    for doc in docs:
        row: dict[str, Any] = {**doc.fields, "doc_id": doc.id, "target": doc.target}
        if task.metric == "loglikelihood_acc":
            row["gold"] = list(task.choices).index(doc.target)
        rows.append(row)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    config: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "doc_to_text": _jinja(task.prompt_template),
        "num_fewshot": 0,
        "metadata": {"version": task.version},
    }
    if task.metric == "loglikelihood_acc":
        config.update(
            output_type="multiple_choice",
            doc_to_choice=list(task.choices),
            doc_to_target="gold",
            target_delimiter=" ",
            metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        )
    elif task.kind == "generation" or task.metric in ("first_word", "choice_letter"):
        config.update(
            output_type="generate_until",
            doc_to_target="target",
            generation_kwargs={
                "until": ["\n"],
                "max_gen_toks": task.max_tokens,
                "do_sample": False,
                "temperature": 0,  # an int: the config digest is canonical JSON (no floats)
            },
            metric_list=[
                {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}
            ],
        )
    # JSON is YAML: no YAML writer needed, and no YAML tag can sneak in.
    (folder / f"{name}.yaml").write_text(json.dumps(config, indent=1) + "\n", "utf-8")
    # The digest leaves out where the data file lies (a path of this machine): the data itself
    # is in it.
    hashed: dict[str, Any] = {**config, "dataset_kwargs": None}
    digest = hashlib.sha256(canonical_json({"config": hashed, "data": rows})).hexdigest()
    return LmEvalTask(name, folder, digest)


def make_gateway_lm(
    task: EvalTask, docs: list[EvalDoc], ask: AskDocument, *, concurrency: int
) -> Any:
    """An lm-eval ``LM`` that answers each request through ``ask`` (one logged call per
    document, or the journaled answer of a resumed run)."""
    from lm_eval.api.model import LM

    by_id = {d.id: d for d in docs}

    class GatewayLM(LM):  # type: ignore[misc]
        def _answers(self, requests: list[Any]) -> dict[str, dict[str, Any]]:
            wanted: dict[str, EvalDoc] = {}
            for request in requests:
                doc_id = str(request.doc.get("doc_id"))
                if doc_id not in by_id:
                    raise EvalRunError(f"lm-eval asked about an unknown document {doc_id!r}")
                wanted[doc_id] = by_id[doc_id]
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                answers = dict(zip(wanted, pool.map(ask, wanted.values()), strict=True))
            return answers

        def loglikelihood(
            self, requests: list[Any], disable_tqdm: bool = False
        ) -> list[tuple[float, bool]]:
            answers = self._answers(requests)
            out = []
            for request in requests:
                doc = by_id[str(request.doc["doc_id"])]
                context, continuation = request.args
                if context != task.prompt(doc):
                    raise EvalRunError(f"lm-eval's prompt for {doc.id} is not the task's")
                choice = continuation[1:] if continuation.startswith(" ") else continuation
                if choice not in task.choices:
                    raise EvalRunError(f"lm-eval scored an unknown choice {continuation!r}")
                wires = answers[doc.id].get("logprobs")
                if wires is None:  # lost between the gateway's log and the journal
                    out.append((float("-inf"), False))
                    continue
                out.append(choice_loglikelihoods(wires)[list(task.choices).index(choice)])
            return out

        def loglikelihood_rolling(
            self, requests: list[Any], disable_tqdm: bool = False
        ) -> list[float]:
            raise EvalRunError("rolling loglikelihood (perplexity) tasks are not driven")

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            answers = self._answers(requests)
            out = []
            for request in requests:
                doc = by_id[str(request.doc["doc_id"])]
                if request.args[0] != task.prompt(doc):
                    raise EvalRunError(f"lm-eval's prompt for {doc.id} is not the task's")
                out.append(str(answers[doc.id].get("output") or ""))
            return out

    return GatewayLM()


def run_lmeval(
    task: EvalTask,
    docs: list[EvalDoc],
    ask: AskDocument,
    folder: Path,
    *,
    concurrency: int,
) -> dict[str, Any]:
    """Run lm-eval's evaluation of ``task`` with every request answered by ``ask``; lm-eval's
    own metrics (what it reports), its version and the task configuration's digest."""
    version = harness_version()
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    written = write_lmeval_task(task, docs, folder)
    manager = TaskManager(include_path=str(written.folder), include_defaults=False)
    lm = make_gateway_lm(task, docs, ask, concurrency=concurrency)
    results = evaluator.simple_evaluate(
        model=lm,
        tasks=[written.name],
        task_manager=manager,
        num_fewshot=0,
        log_samples=False,
        bootstrap_iters=0,
    )
    metrics: Mapping[str, Any] = (results or {}).get("results", {}).get(written.name, {})
    return {
        "harness": HARNESS,
        "version": version,
        "task": written.name,
        "config_sha256": written.config_sha256,
        "metrics": {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not k.endswith("stderr")
        },
    }
