"""`tiergate eval`: run a task through the gateway as logged calls, sign the result, verify one.

`run` pre-registers, asks, seals, and writes a signed attestation plus its run bundle (the
checkpoint, the cited entries with inclusion proofs, the outputs); `verify` checks both
offline against the log's verifier key and recomputes the score.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from gateway.cli._client import api_client, gateway_options, raise_for_problem
from gateway.cli._output import echo_json, json_option

__all__ = ["group"]

_MAX_FILE_BYTES = 64 * 1024 * 1024


@click.group(name="eval")
def group() -> None:
    """Evaluations as logged, signed, verifiable evidence."""


def _task(spec: str) -> Any:
    """A built-in task name, or a task file (JSON or YAML)."""
    from release.evals.builtin import BUILTIN_TASKS, builtin_task
    from release.evals.task import load_task

    if spec in BUILTIN_TASKS:
        return builtin_task(spec)
    return load_task(Path(spec))


@group.command("tasks")
def tasks() -> None:
    """List the built-in tasks (data that installs with Python)."""
    from release.evals.builtin import BUILTIN_TASKS, builtin_task
    from release.evals.task import resolve_docs

    for name in sorted(BUILTIN_TASKS):
        task = builtin_task(name)
        click.echo(f"{name}@{task.version}  {task.kind}  {len(resolve_docs(task))} documents")


@group.command("task")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def write_task(name: str, out: Path) -> None:
    """Write a built-in task as a task file, its data pinned by this interpreter's sha256."""
    task = _task(name)
    out.write_text(json.dumps(task.to_dict(), indent=2) + "\n", encoding="utf-8")
    click.echo(f"wrote {out} (data sha256 {task.data_sha256})")


def _ran_by(role: str, name: str | None, on_behalf_of: str | None) -> dict[str, str]:
    ran_by = {"role": role}
    if name:
        ran_by["name"] = name
    if on_behalf_of:
        ran_by["onBehalfOf"] = on_behalf_of
    return ran_by


def _run_one(
    http: Any,
    task: Any,
    docs: list[Any],
    settings: Any,
    out: Path,
    *,
    key: Any,
    ran_by: dict[str, str],
    submit: bool,
    show_bar: bool | None,
    stop_after: int | None = None,
    harness: str = "builtin",
) -> dict[str, Any] | None:
    """One run into ``out``: journal, bundle, signed attestation (with a key), stored (with
    ``submit``). None when stopped early on purpose."""
    from release.evals.attestation import build_eval_statement, sign_eval_statement
    from release.evals.runner import run_evaluation

    out.mkdir(parents=True, exist_ok=True)
    ask_all, configuration, harness_report = _harness(harness, task, docs, settings, out)
    outcome = run_evaluation(
        http, task, docs, settings, out / "journal.jsonl", show_bar=show_bar,
        stop_after=stop_after, ask_all=ask_all,
    )  # fmt: skip
    if outcome is None:
        return None
    (out / "bundle.json").write_text(json.dumps(outcome.bundle), encoding="utf-8")
    if harness_report:
        (out / "lm-eval-results.json").write_text(json.dumps(harness_report, indent=2), "utf-8")
    stored: dict[str, Any] | None = None
    if key is not None:
        statement = build_eval_statement(
            task=task,
            run_id=outcome.run_id,
            model=outcome.model,
            preregistration_index=outcome.preregistration_index,
            seal_index=outcome.seal_index,
            checkpoint_note=outcome.checkpoint_note,
            samples=outcome.samples,
            result=outcome.result,
            passed=outcome.passed,
            ran_by={**ran_by, "keyId": key.key_id},
            configuration=configuration,
        )
        envelope = sign_eval_statement(statement, key).to_json()
        (out / "attestation.dsse.json").write_bytes(envelope)
        if submit:
            repo, _, rest = outcome.model["name"].partition("@")
            version = rest.split(":")[0]
            response = http.post(
                f"/api/releases/{repo}/{version}/evaluations",
                content=envelope,
                headers={"Content-Type": "application/json"},
            )
            raise_for_problem(response, "storing the attestation")
            stored = response.json()
    result = outcome.result
    return {
        "run_id": outcome.run_id,
        "task": f"{task.name}@{task.version}",
        "model": outcome.model["name"],
        "tier": outcome.model["tier"],
        "score": result.value,
        "interval": [result.lower, result.upper],
        "correct": result.correct,
        "total": result.total,
        "result": "pass" if outcome.passed else "fail",
        "preregistration_index": outcome.preregistration_index,
        "seal_index": outcome.seal_index,
        "stored": stored,
        "harness": harness_report or {"harness": "builtin"},
        "_result": result,
        "_outcome": outcome,
    }


def _harness(
    harness: str, task: Any, docs: list[Any], settings: Any, out: Path
) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """What drives the run's requests: the built-in loop, or lm-eval (checked installed and its
    task files written before any call). Returns the runner's ``ask_all`` hook, the
    attestation's extra configuration entries, and (filled by the run) lm-eval's report."""
    if harness == "builtin":
        return None, [], {}
    from release.evals.lmeval import harness_version, run_lmeval, write_lmeval_task

    version = harness_version()
    written = write_lmeval_task(task, docs, out / "lm-eval")
    configuration = [
        {"name": f"harness:lm-eval@{version}", "digest": {"sha256": written.config_sha256}}
    ]
    report: dict[str, Any] = {}

    def ask_all(one: Any) -> None:
        report.update(
            run_lmeval(task, docs, one, out / "lm-eval", concurrency=settings.concurrency)
        )

    return ask_all, configuration, report


@group.command("run")
@click.option("--task", "task_spec", required=True, help="A built-in task name or a task file.")
@click.option("--model", required=True, metavar="ORG/NAME@VERSION[:tier]")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the journal, the attestation and the run bundle (reuse it to resume).",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key that signs the attestation (without one, none is written).",
)
@click.option(
    "--role",
    type=click.Choice(["publisher", "gateway", "third_party"]),
    default="third_party",
    show_default=True,
    help="Who ran it, as the attestation states (the key decides how it is shown).",
)
@click.option("--on-behalf-of", default=None, help="With --role gateway: for whom.")
@click.option("--name", "ran_by_name", default=None, help="The runner's name in the attestation.")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 32))
@click.option(
    "--harness",
    type=click.Choice(["builtin", "lm-eval"]),
    default="builtin",
    show_default=True,
    help="What builds the requests: the built-in runner, or lm-evaluation-harness (its task "
    "configuration and metric; every request still one logged call per document).",
)
@click.option(
    "--limit", default=None, type=click.IntRange(min=1), help="Only the first N documents."
)
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0, 2))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-calls", default=None, type=click.IntRange(min=1), help="Stop after N calls.")
@click.option("--submit", is_flag=True, help="Store the attestation beside the release.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a tty).")
@json_option
@gateway_options
def run(
    task_spec: str,
    model: str,
    out: Path,
    key_path: Path | None,
    role: str,
    on_behalf_of: str | None,
    ran_by_name: str | None,
    concurrency: int,
    harness: str,
    limit: int | None,
    temperature: float,
    seed: int,
    max_calls: int | None,
    submit: bool,
    progress: bool | None,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Run a task through the gateway (resumable: run again with the same --out)."""
    from licensing.keys import load_private_key
    from release.evals.runner import RunSettings
    from release.evals.task import resolve_docs

    task = _task(task_spec)
    if limit is not None:
        task = replace(task, limit=limit)  # pre-registered: the limit is part of the task
    docs = resolve_docs(task)  # a task whose data cannot be found fails before any call
    key = load_private_key(key_path) if key_path is not None else None
    ran_by = _ran_by(role, ran_by_name, on_behalf_of)
    settings = RunSettings(model, temperature=temperature, seed=seed, concurrency=concurrency)
    with api_client(gateway, token, timeout=300.0) as http:
        summary = _run_one(
            http, task, docs, settings, out, key=key, ran_by=ran_by, submit=submit,
            show_bar=progress, stop_after=max_calls, harness=harness,
        )  # fmt: skip
    if summary is None:
        click.echo(f"stopped after {max_calls} calls; run again with --out {out} to resume")
        return
    result = summary["_result"]
    outcome = summary.pop("_outcome")
    summary.pop("_result")
    stored = summary["stored"]
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"{summary['task']} on {summary['model']}: {result.value} "
        f"({result.correct}/{result.total}, 95% CI {result.lower}-{result.upper}), "
        f"{summary['result']}; pre-registered at {outcome.preregistration_index}, "
        f"sealed at {outcome.seal_index}"
    )
    if stored is not None:
        click.echo(f"stored as attestation {stored['id']} ({stored['status']})")


@group.command("compare")
@click.option("--task", "task_spec", required=True, help="A built-in task name or a task file.")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    metavar="ORG/NAME@VERSION:tier",
    help="Tiers to run on the same task, the first being the reference; repeat.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--key",
    "key_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key that signs each run's attestation.",
)
@click.option(
    "--role",
    type=click.Choice(["publisher", "gateway", "third_party"]),
    default="third_party",
    show_default=True,
)
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 32))
@click.option("--submit", is_flag=True, help="Store each attestation beside the release.")
@json_option
@gateway_options
def compare(
    task_spec: str,
    models: tuple[str, ...],
    out: Path,
    key_path: Path | None,
    role: str,
    concurrency: int,
    submit: bool,
    as_json: bool,
    gateway: str,
    token: str | None,
) -> None:
    """Run the same task on several tiers in one command; print each tier minus the first,
    with a Newcombe 95% interval (one pre-registered, sealed run and attestation per tier)."""
    from licensing.keys import load_private_key
    from release.evals.compare import AttestedScore, difference
    from release.evals.runner import RunSettings
    from release.evals.task import resolve_docs

    if len(models) < 2:
        raise click.UsageError("compare needs at least two --model options")
    task = _task(task_spec)
    docs = resolve_docs(task)
    key = load_private_key(key_path) if key_path is not None else None
    runs = []
    with api_client(gateway, token, timeout=300.0) as http:
        for number, model in enumerate(models):
            settings = RunSettings(model, concurrency=concurrency)
            folder = out / f"{number}-{model.replace('/', '_').replace(':', '_')}"
            summary = _run_one(
                http, task, docs, settings, folder, key=key, ran_by=_ran_by(role, None, None),
                submit=submit, show_bar=None,
            )  # fmt: skip
            assert summary is not None  # no stop_after: a run either finishes or raises
            summary.pop("_outcome")
            result = summary.pop("_result")
            runs.append((summary, result))

    def scored(summary: dict[str, Any], result: Any) -> AttestedScore:
        return AttestedScore(
            summary["tier"], summary["task"], result.value, result.lower, result.upper,
            result.total, "publisher", "",
        )  # fmt: skip

    reference = scored(*runs[0])
    report = []
    for summary, result in runs:
        d = difference(scored(summary, result), reference)
        report.append({**summary, "difference": {"value": d.value, "interval": [d.lower, d.upper]}})
    if as_json:
        echo_json(report)
        return
    for item in report:
        diff = item["difference"]
        click.echo(
            f"{item['model']}: {item['score']} (95% CI {item['interval'][0]}-"
            f"{item['interval'][1]}); minus {runs[0][0]['tier']}: {diff['value']} "
            f"({diff['interval'][0]} to {diff['interval'][1]})"
        )


def _read(path: Path, what: str) -> bytes:
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise click.UsageError(f"{what} {path} is larger than {_MAX_FILE_BYTES} bytes")
    return path.read_bytes()


@group.command("verify")
@click.argument("attestation", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True
)
@click.option("--task", "task_spec", required=True, help="A built-in task name or a task file.")
@click.option("--vkey", required=True, help="The log's verifier key (name+hexid+base64).")
@click.option(
    "--key",
    "key_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A PEM public key trusted to sign the attestation; repeat. Without one, the "
    "signature is not checked and the result is reported as unverified.",
)
@click.option(
    "--limit", default=None, type=click.IntRange(min=1), help="The run's --limit, if any."
)
@json_option
def verify(
    attestation: Path,
    bundle: Path,
    task_spec: str,
    vkey: str,
    key_paths: tuple[Path, ...],
    limit: int | None,
    as_json: bool,
) -> None:
    """Verify an evaluation offline: log evidence, pre-registration order, the score itself."""
    from licensing.errors import TransparencyLogError
    from licensing.keys import load_public_key
    from licensing.tlog.note import Verifier
    from release.evals.attestation import open_eval_attestation
    from release.evals.task import resolve_docs
    from release.evals.verify import verify_evaluation

    try:
        log_key = Verifier.from_vkey(vkey.strip())
    except TransparencyLogError as exc:
        raise click.BadParameter(f"not a note verifier key: {exc}", param_hint="--vkey") from None
    keys = [load_public_key(p) for p in key_paths]
    opened = open_eval_attestation(_read(attestation, "attestation"), keys or None)
    try:
        evidence = json.loads(_read(bundle, "bundle"))
    except ValueError:
        raise click.UsageError(f"{bundle} is not JSON") from None
    task = _task(task_spec)
    if limit is not None:
        task = replace(task, limit=limit)
    verified = verify_evaluation(opened, evidence, task, resolve_docs(task), [log_key])
    signer = opened.signer.key_id if opened.signer is not None else None
    report = {
        "verified": True,
        "signature": "verified" if signer else "unverified (no --key given)",
        "signer_key_id": signer,
        "ran_by": dict(opened.predicate.get("ranBy", {})),
        "run_id": verified.run_id,
        "task": verified.task,
        "score": verified.value,
        "interval": [verified.lower, verified.upper],
        "correct": verified.correct,
        "total": verified.total,
        "result": verified.result,
        "checkpoint_size": verified.checkpoint_size,
    }
    if as_json:
        echo_json(report)
        return
    click.echo(
        f"OK: {verified.task} score {verified.value} ({verified.correct}/{verified.total}, "
        f"95% CI {verified.lower}-{verified.upper}) {verified.result}, recomputed from "
        f"{verified.total} logged calls in a checkpoint of size {verified.checkpoint_size}"
    )
    click.echo(f"signature: {report['signature']}")
