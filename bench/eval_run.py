"""Evaluation benchmark: the built-in tasks on the tests' tiny trained model through a real
gateway process, end to end (pre-register, every sample a logged call, seal, evidence with
inclusion proofs, attestation signed, offline verification), against the same prompts sent
as plain completions in the same run (the baseline: what the samples alone cost).

Run: ``.venv/bin/python bench/eval_run.py`` (SQLite, one uvicorn process on 127.0.0.1,
concurrency 2). Target (issue 20): a whole evaluation <= 15 minutes on this CPU.
``--harness lm-eval`` drives the same tasks through lm-evaluation-harness (its task files,
requests and metric; ``release.evals.lmeval``); ``pydoc-topics-mc-ll`` is the multiple choice
scored from prompt logprobs (scoring calls, ``max_tokens=0``), whose baseline is the same
scoring calls sent plainly.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generation_overhead import make_tokens, start_server  # noqa: E402


def build(root: Path) -> Path:
    """The tests' tiny trained Llama with 512 positions (the task prompts need ~150 tokens)."""
    import json
    from datetime import UTC, datetime

    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release
    from release.testing import build_tiny_model

    model = build_tiny_model(root / "model", train_steps=30)
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 512
    (model / "config.json").write_text(json.dumps(config))
    key = PrivateKey.generate()
    out = root / "out"
    options = BuildOptions(repo_id="bench/tiny", version="1.0.0", approval=ApprovalPolicy())
    build_release(model, out, key=key, options=options, now=datetime.now(UTC), show_progress=False)
    (root / "pub.pem").write_bytes(key.public_key.to_pem())
    return out


def plain_round(url: str, token: str, model: str, prompts: list[str], max_tokens: int) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    with (
        httpx.Client(base_url=url, headers=headers, timeout=300) as http,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):

        def one(prompt: str) -> None:
            body = {"model": model, "prompt": prompt, "max_tokens": max_tokens,
                    "temperature": 0.0, "seed": 0}  # fmt: skip
            http.post("/v1/completions", json=body).raise_for_status()

        list(pool.map(one, prompts))
    return time.perf_counter() - start


def scoring_round(url: str, token: str, model: str, prompt_lists: list[list[str]]) -> float:
    """The baseline of a logprob-scored task: its scoring calls, without a run around them."""
    headers = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    with (
        httpx.Client(base_url=url, headers=headers, timeout=300) as http,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):

        def one(prompts: list[str]) -> None:
            body = {"model": model, "prompt": prompts, "max_tokens": 0, "echo": True,
                    "logprobs": 1}  # fmt: skip
            http.post("/v1/completions", json=body).raise_for_status()

        list(pool.map(one, prompt_lists))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["pydoc-topics-mc", "pydoc-topics-next-word"])
    parser.add_argument("--harness", choices=["builtin", "lm-eval"], default="builtin")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N documents.")
    args = parser.parse_args()

    from licensing.keys import PrivateKey
    from licensing.tlog.note import Verifier
    from release.evals.attestation import (
        build_eval_statement,
        open_eval_attestation,
        sign_eval_statement,
    )
    from release.evals.builtin import builtin_task
    from release.evals.runner import RunSettings, run_evaluation
    from release.evals.task import resolve_docs
    from release.evals.verify import verify_evaluation
    from release.upload import publish_release_folder

    root = Path(tempfile.mkdtemp(prefix="tiergate-bench-eval-"))
    out = build(root)
    data = root / "data"
    pub_token, dev_token = make_tokens(data)
    url, process = start_server(data)
    model = "bench/tiny@1.0.0"
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {pub_token}"}, timeout=300
        ) as http:
            http.post("/api/keys", json={"pem": (root / "pub.pem").read_text()}).raise_for_status()
            publish_release_folder(out, client=http)
        vkey = Verifier.from_vkey(httpx.get(f"{url}/log/vkey").text.strip())
        key = PrivateKey.generate()
        plain_round(url, dev_token, model, ["warm up"], 2)  # loads the model once
        for name in args.tasks:
            task = builtin_task(name)
            if args.limit is not None:
                task = replace(task, limit=args.limit)
            docs = resolve_docs(task)
            if task.metric == "loglikelihood_acc":
                baseline = scoring_round(
                    url, dev_token, model, [task.choice_prompts(d) for d in docs]
                )
            else:
                baseline = plain_round(
                    url, dev_token, model, [task.prompt(d) for d in docs], task.max_tokens
                )
            report: dict[str, Any] = {}
            ask_all = None
            if args.harness == "lm-eval":
                from release.evals.lmeval import run_lmeval

                folder = root / "lm-eval" / name

                def ask_all(one: Any, task: Any = task, docs: Any = docs, at: Any = folder) -> None:
                    report.update(run_lmeval(task, docs, one, at, concurrency=2))  # noqa: B023

            start = time.perf_counter()
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {dev_token}"}, timeout=300
            ) as http:
                outcome = run_evaluation(
                    http, task, docs, RunSettings(model, concurrency=2),
                    root / f"{name}.jsonl", show_bar=False, ask_all=ask_all,
                )  # fmt: skip
            assert outcome is not None
            statement = build_eval_statement(
                task=task, run_id=outcome.run_id, model=outcome.model,
                preregistration_index=outcome.preregistration_index,
                seal_index=outcome.seal_index, checkpoint_note=outcome.checkpoint_note,
                samples=outcome.samples, result=outcome.result, passed=outcome.passed,
                ran_by={"role": "third_party", "keyId": key.key_id},
            )  # fmt: skip
            envelope = sign_eval_statement(statement, key).to_json()
            run_s = time.perf_counter() - start
            start = time.perf_counter()
            attestation = open_eval_attestation(envelope, [key.public_key])
            verified = verify_evaluation(attestation, outcome.bundle, task, docs, [vkey])
            verify_s = time.perf_counter() - start
            print(
                f"{name} ({args.harness}"
                + (f" {report['version']}, its metrics {report['metrics']}" if report else "")
                + f"): {len(docs)} samples; score {verified.value} "
                f"[{verified.lower}, {verified.upper}] {verified.result}\n"
                f"  plain completions (baseline): {baseline:7.2f} s\n"
                f"  eval run (prereg+samples+seal+evidence+sign): {run_s:7.2f} s "
                f"(x{run_s / baseline:.2f} of baseline)\n"
                f"  offline verify: {verify_s:7.2f} s; bundle "
                f"{len(str(outcome.bundle)) // 1024} KiB; total {run_s + verify_s:7.2f} s "
                f"(target <= 900 s)",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
