"""The pure parts of evaluations: built-in tasks, task files, scoring and intervals, the
attestation's shape against its JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from release.errors import EvalAttestationInvalidError, EvalDataNotFoundError, EvalTaskInvalidError
from release.evals.builtin import BUILTIN_TASKS, builtin_task
from release.evals.scoring import aggregate, passes, score_output
from release.evals.task import EvalDoc, load_task, resolve_docs, task_from_dict

SCHEMA = Path(__file__).parents[2] / "docs" / "schemas" / "eval-v1.schema.json"


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_builtin_tasks_are_deterministic_and_pinned(name: str, tmp_path: Path) -> None:
    task = builtin_task(name)
    docs = resolve_docs(task)
    assert len(docs) >= 50
    assert resolve_docs(builtin_task(name)) == docs
    # Written out and read back, the task file names the same data and the same task.
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task.to_dict()))
    again = load_task(path)
    assert again.sha256 == task.sha256
    assert resolve_docs(again) == docs


def test_multiple_choice_documents_hide_the_answer_and_spread_it() -> None:
    task = builtin_task("pydoc-topics-mc")
    docs = resolve_docs(task)
    for doc in docs:
        options = doc.fields["options"].splitlines()
        assert f"{doc.target}. {doc.id}" in options
        assert doc.id not in doc.fields["excerpt"].split()[:1]
    targets = {d.target for d in docs}
    assert targets == {"A", "B", "C", "D"}


def test_a_task_naming_data_that_is_not_installed_fails_before_anything() -> None:
    raw = builtin_task("pydoc-topics-mc").to_dict()
    raw["source"] = {**raw["source"], "module": "no_such_module_for_tiergate"}
    with pytest.raises(EvalDataNotFoundError, match="not installed"):
        resolve_docs(task_from_dict(raw))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "essay"),
        ("metric", "bleu"),
        ("data_sha256", "xyz"),
        ("max_tokens", 0),
        ("pass_criteria", {"minimum": "1.5"}),
        ("choices", ["A"]),
        ("source", {}),
    ],
)
def test_malformed_task_files_are_refused(field: str, value: object) -> None:
    raw = builtin_task("pydoc-topics-mc").to_dict()
    raw[field] = value
    with pytest.raises(EvalTaskInvalidError):
        task_from_dict(raw)


def test_a_prompt_template_cannot_reach_past_the_document_fields() -> None:
    raw = builtin_task("pydoc-topics-next-word").to_dict()
    raw["prompt_template"] = "$context ${missing}"
    task = task_from_dict(raw)
    with pytest.raises(EvalTaskInvalidError):
        task.prompt(EvalDoc("d", {"context": "x"}, "y"))


def test_scoring_reads_the_answer_from_text_only() -> None:
    mc = builtin_task("pydoc-topics-mc")
    doc = EvalDoc("assert", {}, "C")
    assert [score_output(mc, doc, t) for t in [" C", "(c)", " C. assert", "B", "", "  "]] == [
        1, 1, 1, 0, 0, 0,
    ]  # fmt: skip
    gen = builtin_task("pydoc-topics-next-word")
    word = EvalDoc("x", {}, "program:")
    assert score_output(gen, word, " program: and") == 1
    assert score_output(gen, word, " programs") == 0


def test_aggregates_are_exact_strings_with_a_wilson_interval() -> None:
    result = aggregate([1, 0, 0, 1, 1])
    assert (result.value, result.lower, result.upper) == ("0.600000", "0.230724", "0.882379")
    assert aggregate([1] * 10).upper == "1.000000"
    assert aggregate([0] * 10).lower == "0.000000"
    assert aggregate([]).total == 0
    task = builtin_task("pydoc-topics-mc")
    assert passes(task, aggregate([1, 0, 0, 0]))  # 0.25 reaches the 0.25 bar
    assert not passes(task, aggregate([0, 0, 0, 1, 0]))


def test_the_attestation_matches_its_json_schema_and_rejects_other_types() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from licensing.keys import PrivateKey
    from release.evals.attestation import (
        SampleResult,
        build_eval_statement,
        open_eval_attestation,
        sign_eval_statement,
    )

    task = builtin_task("pydoc-topics-mc")
    samples = [SampleResult(5, "assert", "sha256:" + "ab" * 32, 1)]
    statement = build_eval_statement(
        task=task,
        run_id="r" * 32,
        model={
            "name": "acme/x@1.0.0:open",
            "repo_id": "acme/x",
            "version": "1.0.0",
            "tier": "open",
            "release_digest": "cd" * 32,
        },
        preregistration_index=2,
        seal_index=9,
        checkpoint_note="log.example\n10\nAAAA\n\n— log.example sig\n",
        samples=samples,
        result=aggregate([1]),
        passed=True,
        ran_by={"role": "gateway", "keyId": "k", "onBehalfOf": "auditor"},
    )
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(statement.to_dict(), schema)
    key = PrivateKey.generate()
    envelope = sign_eval_statement(statement, key).to_json()
    assert open_eval_attestation(envelope, [key.public_key]).signer == key.public_key
    with pytest.raises(EvalAttestationInvalidError):
        open_eval_attestation(envelope, [PrivateKey.generate().public_key])
    with pytest.raises(EvalAttestationInvalidError):
        open_eval_attestation(b'{"payload": 1}', None)


def test_tier_differences_carry_a_newcombe_interval_and_the_page_section_says_who() -> None:
    from release.evals.compare import AttestedScore, difference, evaluation_lines

    def score(tier: str, correct: int, status: str = "publisher") -> AttestedScore:
        result = aggregate([1] * correct + [0] * (80 - correct))
        return AttestedScore(
            tier, "pydoc-topics-mc@1", result.value, result.lower, result.upper, 80, status,
            tier[0] * 64,
        )  # fmt: skip

    optimized, open_tier = score("optimized", 30), score("open", 34)
    diff = difference(optimized, open_tier)
    assert diff.value == "-0.050000"
    assert float(diff.lower) < -0.05 < float(diff.upper)
    assert float(diff.lower) < 0 < float(diff.upper)  # 4 of 80 is within the noise
    assert difference(optimized, open_tier) == diff  # the same digits every time
    lines = evaluation_lines([optimized, open_tier, score("int4", 10, "unverified")])
    text = "\n".join(lines)
    assert "| pydoc-topics-mc@1 | optimized | -0.050000 |" in text
    assert "unverified signature" in text
    assert "| int4 | -" not in text  # an unverified score is never compared
    assert evaluation_lines([]) == []
