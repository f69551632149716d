"""Offline verification of an evaluation: the attestation against the log, the score recomputed.

The evidence is a run bundle (``tiergate-eval-bundle/v1``): the signed checkpoint the
attestation names, each cited log entry with its inclusion proof at that checkpoint, and the
output texts. The log holds only digests of outputs; the bundle carries the texts, each
checked against its logged digest before it is scored. Nothing is trusted but the log's
verifier key, the signer's key and the task's data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from licensing.errors import LicensingError
from licensing.tlog.checkpoint import Checkpoint, open_checkpoint
from licensing.tlog.merkle import leaf_hash, verify_inclusion
from licensing.tlog.note import Verifier
from release.errors import EvalEvidenceError
from release.evals.attestation import EvalAttestation, SampleResult, task_summary
from release.evals.logprobs import logprobs_digest, samples_digest
from release.evals.scoring import aggregate, passes, score_logprobs, score_output
from release.evals.task import EvalDoc, EvalTask

__all__ = [
    "BUNDLE_FORMAT",
    "RUN_DOC_KEY",
    "RUN_ID_KEY",
    "VerifiedEvaluation",
    "counted_samples",
    "verify_evaluation",
]

BUNDLE_FORMAT = "tiergate-eval-bundle/v1"
# The metadata keys a run's calls carry, logged by the gateway in generation.completed.
RUN_ID_KEY = "tiergate_eval_run"
RUN_DOC_KEY = "tiergate_eval_doc"


def _reject(reason: str, message: str) -> EvalEvidenceError:
    return EvalEvidenceError(message, reason=reason)


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifiedEvaluation:
    run_id: str
    task: str
    total: int
    correct: int
    value: str
    lower: str
    upper: str
    result: str
    checkpoint_size: int


def counted_samples(seal_samples: Iterable[tuple[str, int]]) -> dict[str, int]:
    """doc id -> the log index that counts: the run's first call for that document.

    A later call for the same document (a retry, or fishing for a better answer) never
    replaces the first, so re-asking cannot raise a score.
    """
    counted: dict[str, int] = {}
    for doc, index in sorted(seal_samples, key=lambda pair: pair[1]):
        counted.setdefault(doc, index)
    return counted


class _Evidence:
    """The bundle's entries, each opened only after its inclusion proof checks out."""

    def __init__(self, bundle: Mapping[str, Any], checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        entries = bundle.get("entries")
        outputs = bundle.get("outputs", {})
        if not isinstance(entries, dict) or not isinstance(outputs, dict):
            raise _reject("bundle", "the run bundle lacks its entries or outputs")
        self.entries = entries
        self.outputs = outputs
        logprobs = bundle.get("logprobs", {})
        if not isinstance(logprobs, dict):
            raise _reject("bundle", "the run bundle's logprobs are not an object")
        self.logprobs_by_index: Mapping[str, Any] = logprobs

    def entry(self, index: int, what: str) -> dict[str, Any]:
        if not 0 <= index < self.checkpoint.size:
            raise _reject(
                "not_in_checkpoint",
                f"{what} at log index {index} is not in the checkpoint (tree size "
                f"{self.checkpoint.size})",
            )
        item = self.entries.get(str(index))
        if not isinstance(item, dict) or not isinstance(item.get("entry"), str):
            raise _reject("missing_entry", f"the bundle lacks {what} (log index {index})")
        raw = item["entry"].encode("utf-8")
        try:
            proof = [base64.b64decode(h, validate=True) for h in item.get("proof", [])]
            verify_inclusion(
                leaf_hash(raw), index, self.checkpoint.size, proof, self.checkpoint.root_hash
            )
        except (binascii.Error, ValueError, TypeError, LicensingError):
            raise _reject(
                "inclusion", f"{what} (log index {index}) is not the entry the log holds there"
            ) from None
        entry = json.loads(raw)
        if not isinstance(entry, dict) or entry.get("index") != index:
            raise _reject("inclusion", f"log entry {index} names another index")
        return entry

    def logprobs(self, index: int) -> list[Mapping[str, Any]] | None:
        kept = self.logprobs_by_index.get(str(index))
        if kept is None:
            return None
        if not isinstance(kept, list) or not all(isinstance(w, dict) for w in kept):
            raise _reject("bundle", f"the bundle's logprobs of log index {index} are malformed")
        return kept

    def output(self, index: int) -> str | None:
        text = self.outputs.get(str(index))
        return text if isinstance(text, str) else None


def _check_preregistration(
    entry: Mapping[str, Any], predicate: Mapping[str, Any], task: EvalTask
) -> Mapping[str, Any]:
    fields = entry.get("fields", {})
    if (
        entry.get("action") != "evaluation.preregistered"
        or fields.get("run_id") != predicate["runId"]
    ):
        raise _reject("preregistration", "the cited pre-registration is not this run's")
    logged = fields.get("task", {})
    summary = task_summary(task)
    for key in ("name", "version", "dataSha256", "taskSha256", "passCriteria"):
        if logged.get(key) != summary[key]:
            raise _reject("preregistration", f"the pre-registered task {key} differs from the task")
    if fields.get("model", {}).get("release_digest") != predicate["model"].get("release_digest"):
        raise _reject("preregistration", "the pre-registered model is another release")
    sampling: Mapping[str, Any] = fields.get("sampling", {})
    return sampling


def _check_sample(
    entry: Mapping[str, Any],
    *,
    run_id: str,
    doc: EvalDoc,
    task: EvalTask,
    actor: Any,
    release_digest: str,
    sampling: Mapping[str, Any],
) -> str:
    """The sample's logged output digest, once the entry is shown to be this run's call."""
    index = entry.get("index")
    fields = entry.get("fields", {})
    metadata = fields.get("metadata", {})
    action = "generation.scored" if task.metric == "loglikelihood_acc" else "generation.completed"
    if (
        entry.get("action") != action
        or metadata.get(RUN_ID_KEY) != run_id
        or metadata.get(RUN_DOC_KEY) != doc.id
    ):
        raise _reject("sample", f"log entry {index} is not this run's call for {doc.id}")
    if entry.get("actor") != actor:
        raise _reject("sample", f"log entry {index} was made by someone else than the run")
    if fields.get("model", {}).get("release_digest") != release_digest:
        raise _reject("sample", f"log entry {index} called another release")
    if task.metric == "loglikelihood_acc":
        return _check_scoring(entry, task, doc)
    logged = fields.get("sampling", {})
    for key, value in sampling.items():
        if logged.get(key) != value:
            raise _reject("sampling", f"log entry {index} used another {key} than pre-registered")
    if fields.get("prompt_sha256") != _sha(task.prompt(doc)):
        raise _reject("prompt", f"log entry {index} was not prompted with document {doc.id}")
    outputs = fields.get("outputs") or [{}]
    digest = outputs[0].get("sha256")
    if not isinstance(digest, str):
        raise _reject("sample", f"log entry {index} logs no output digest")
    return digest


def _check_scoring(entry: Mapping[str, Any], task: EvalTask, doc: EvalDoc) -> str:
    """A scoring call's entry: prompted with each choice of ``doc``; its logprobs digests.

    Nothing is sampled in a scoring call, so there are no sampling settings to compare."""
    index = entry.get("index")
    fields = entry.get("fields", {})
    wanted = [_sha(p) for p in task.choice_prompts(doc)]
    if fields.get("prompt_sha256s") != wanted:
        raise _reject("prompt", f"log entry {index} did not score the choices of {doc.id}")
    scores = fields.get("scores")
    if not isinstance(scores, list) or len(scores) != len(wanted):
        raise _reject("sample", f"log entry {index} logs no logprobs digests")
    return ",".join(str(s.get("logprobs_sha256")) for s in scores)


def _scored_sample(
    evidence: _Evidence, index: int, doc: EvalDoc, task: EvalTask, logged: str
) -> SampleResult:
    """A multiple-choice sample recomputed from the bundle's logprobs, each object checked
    against the digest the gateway logged for it (``logged``: the digests, comma-joined)."""
    wires = evidence.logprobs(index)
    if wires is None:
        return SampleResult(index, doc.id, None, 0)  # withheld: scores 0, like a lost text
    digests = [logprobs_digest(w) for w in wires]
    if ",".join(digests) != logged:
        raise _reject("logprobs", f"the logprobs of sample {doc.id} are not the logged ones")
    return SampleResult(index, doc.id, samples_digest(digests), score_logprobs(task, doc, wires))


def verify_evaluation(
    attestation: EvalAttestation,
    bundle: Mapping[str, Any],
    task: EvalTask,
    docs: list[EvalDoc],
    log_verifiers: Iterable[Verifier],
) -> VerifiedEvaluation:
    """Check every claim of ``attestation`` against the logged evidence and recompute it.

    Raises :class:`EvalEvidenceError` (its ``reason`` names the failed check) on anything
    altered, dropped, cherry-picked, logged before pre-registration or outside the checkpoint,
    and with reason ``malformed`` on a predicate or bundle of the wrong shape: never a
    foreign exception.
    """
    try:
        return _verify(attestation, bundle, task, docs, list(log_verifiers))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _reject(
            "malformed", f"the attestation or bundle is malformed: {exc!r:.200}"
        ) from None


def _verify(
    attestation: EvalAttestation,
    bundle: Mapping[str, Any],
    task: EvalTask,
    docs: list[EvalDoc],
    log_verifiers: list[Verifier],
) -> VerifiedEvaluation:
    predicate = attestation.predicate
    if bundle.get("format") != BUNDLE_FORMAT:
        raise _reject("bundle", f"a run bundle has format {BUNDLE_FORMAT}")
    if task_summary(task) != predicate.get("task"):
        raise _reject("task", "the attestation names another task (or other task data)")
    note = predicate.get("checkpoint")
    if not isinstance(note, str) or bundle.get("checkpoint") != note:
        raise _reject("checkpoint", "the bundle's checkpoint is not the one the attestation names")
    try:
        checkpoint = open_checkpoint(note, log_verifiers)
    except LicensingError as exc:
        raise _reject("checkpoint", f"the checkpoint does not verify: {exc.message}") from None
    evidence = _Evidence(bundle, checkpoint)
    run_id = str(predicate["runId"])
    release_digest = attestation.release_digest
    if predicate["model"].get("release_digest") != release_digest:
        raise _reject("subject", "the predicate's model is not the attested release")

    prereg_index = int(predicate["preregistration"]["logIndex"])
    prereg = evidence.entry(prereg_index, "the pre-registration")
    sampling = _check_preregistration(prereg, predicate, task)
    seal_index = int(predicate["seal"]["logIndex"])
    seal = evidence.entry(seal_index, "the seal")
    seal_fields = seal.get("fields", {})
    if seal.get("action") != "evaluation.sealed" or seal_fields.get("run_id") != run_id:
        raise _reject("seal", "the cited seal is not this run's")
    if seal_fields.get("preregistration_index") != prereg_index:
        raise _reject("seal", "the seal closes another pre-registration")
    logged_calls = [(str(d), int(i)) for d, i in seal_fields.get("samples", [])]
    counted = counted_samples(logged_calls)

    attested = [dict(s) for s in predicate.get("samples", [])]
    for item in attested:
        # First: a sample logged before the bar was set is the worst case, named as such.
        if int(item["logIndex"]) <= prereg_index:
            raise _reject(
                "before_preregistration",
                f"sample {item['docId']} (log index {item['logIndex']}) was logged before the "
                f"pre-registration (log index {prereg_index})",
            )
    by_id = {d.id: d for d in docs}
    missing = [d.id for d in docs if d.id not in counted]
    if missing:
        raise _reject(
            "incomplete", f"the run has no call for {len(missing)} document(s): {missing[:3]}"
        )
    claimed = {str(s["docId"]): int(s["logIndex"]) for s in attested}
    if len(claimed) != len(attested) or claimed != {d: counted[d] for d in by_id}:
        raise _reject(
            "samples",
            "the attested samples are not the run's first logged call for every document "
            "(a sample dropped, replaced or cherry-picked)",
        )
    samples: list[SampleResult] = []
    for item in attested:
        doc = by_id[str(item["docId"])]
        index = int(item["logIndex"])
        if index >= seal_index:
            raise _reject("seal", f"sample {doc.id} was logged after the run was sealed")
        entry = evidence.entry(index, f"sample {doc.id}")
        digest = _check_sample(
            entry,
            run_id=run_id,
            doc=doc,
            task=task,
            actor=prereg.get("actor"),
            release_digest=release_digest,
            sampling=sampling,
        )
        if task.metric == "loglikelihood_acc":
            samples.append(_scored_sample(evidence, index, doc, task, digest))
            continue
        text = evidence.output(index)
        if text is None:
            # A lost output scores 0: withholding text can only lower a score.
            samples.append(SampleResult(index, doc.id, None, 0))
            continue
        if _sha(text) != digest:
            raise _reject("output", f"the output of sample {doc.id} is not the logged one")
        samples.append(SampleResult(index, doc.id, digest, score_output(task, doc, text)))
    recomputed = [s.to_dict() for s in samples]
    if recomputed != attested:
        raise _reject("score", "a per-sample score or digest differs from the recomputed one")
    result = aggregate([s.score for s in samples])
    score = predicate.get("score", {})
    if {k: v for k, v in score.items() if k != "metric"} != result.to_dict():
        raise _reject("score", "the aggregate score differs from the recomputed one")
    verdict = "pass" if passes(task, result) else "fail"
    if predicate.get("result") != verdict:
        raise _reject("result", f"the run's result is {verdict}, not {predicate.get('result')}")
    return VerifiedEvaluation(
        run_id=run_id,
        task=f"{task.name}@{task.version}",
        total=result.total,
        correct=result.correct,
        value=result.value,
        lower=result.lower,
        upper=result.upper,
        result=verdict,
        checkpoint_size=checkpoint.size,
    )
