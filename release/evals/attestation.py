"""Evaluation attestations: in-toto Statement v1, predicate ``https://tiergate.dev/eval/v1``,
signed as DSSE. Subject: the release statement digest. Schema: docs/schemas/eval-v1.schema.json.

The predicate borrows the in-toto ``test-result`` vocabulary where it fits (``result``
pass/fail, ``configuration`` as ResourceDescriptors); what that predicate has no room for
(scores, intervals, the log evidence) is ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from licensing.dsse import Envelope, sign_envelope, verify_envelope
from licensing.errors import LicensingError
from licensing.intoto import PAYLOAD_TYPE, Statement, Subject, parse_statement
from licensing.keys import PrivateKey, PublicKey
from release.errors import EvalAttestationInvalidError
from release.evals.scoring import Aggregate
from release.evals.task import EvalTask

__all__ = [
    "EVAL_PREDICATE_TYPE",
    "ROLES",
    "EvalAttestation",
    "SampleResult",
    "build_eval_statement",
    "open_eval_attestation",
    "sign_eval_statement",
]

EVAL_PREDICATE_TYPE = "https://tiergate.dev/eval/v1"
# Who ran it: the publisher of the release, the gateway on someone's behalf, or anyone else.
ROLES = ("publisher", "gateway", "third_party")
_MAX_ATTESTATION_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class SampleResult:
    log_index: int
    doc_id: str
    output_sha256: str | None  # "sha256:<hex>", None when the output was lost (scored 0)
    score: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "logIndex": self.log_index,
            "docId": self.doc_id,
            "outputSha256": self.output_sha256,
            "score": self.score,
        }


def task_summary(task: EvalTask) -> dict[str, Any]:
    return {
        "name": task.name,
        "version": task.version,
        "kind": task.kind,
        "metric": task.metric,
        "dataSha256": task.data_sha256,
        "taskSha256": task.sha256,
        "passCriteria": task.pass_criteria.to_dict(),
    }


def build_eval_statement(
    *,
    task: EvalTask,
    run_id: str,
    model: Mapping[str, str],
    preregistration_index: int,
    seal_index: int,
    checkpoint_note: str,
    samples: list[SampleResult],
    result: Aggregate,
    passed: bool,
    ran_by: Mapping[str, str],
    configuration: Sequence[Mapping[str, Any]] = (),
) -> Statement:
    """The statement of one run; ``model`` holds name, repo_id, version, tier, release_digest.

    ``configuration``: more named, digested inputs of the run (the harness that drove it and
    its task configuration), after the task's own entry."""
    if ran_by.get("role") not in ROLES:
        raise EvalAttestationInvalidError(f"ranBy.role must be one of {', '.join(ROLES)}")
    indices = [s.log_index for s in samples]
    predicate: dict[str, Any] = {
        "runId": run_id,
        "task": task_summary(task),
        "model": dict(model),
        "preregistration": {"logIndex": preregistration_index},
        "seal": {"logIndex": seal_index},
        "logRange": {
            "first": min(indices, default=seal_index),
            "last": max(indices, default=seal_index),
        },
        "checkpoint": checkpoint_note,
        "samples": [s.to_dict() for s in samples],
        "score": {"metric": "accuracy", **result.to_dict()},
        "result": "pass" if passed else "fail",
        "configuration": [
            {"name": f"task:{task.name}@{task.version}", "digest": {"sha256": task.sha256}},
            *(dict(c) for c in configuration),
        ],
        "ranBy": dict(ran_by),
    }
    subject = Subject.sha256(str(model["name"]), str(model["release_digest"]))
    return Statement(subjects=(subject,), predicate_type=EVAL_PREDICATE_TYPE, predicate=predicate)


def sign_eval_statement(statement: Statement, key: PrivateKey) -> Envelope:
    return sign_envelope(PAYLOAD_TYPE, statement.to_json(), key)


@dataclass(frozen=True)
class EvalAttestation:
    """A parsed attestation; ``signer`` is the trusted key that verified it, else None."""

    envelope: Envelope
    statement: Statement
    signer: PublicKey | None

    @property
    def predicate(self) -> Mapping[str, Any]:
        return self.statement.predicate

    @property
    def release_digest(self) -> str:
        return self.statement.subjects[0].sha256_hex or ""


def open_eval_attestation(
    envelope_bytes: bytes, trusted_keys: Iterable[PublicKey] | None
) -> EvalAttestation:
    """Parse a DSSE attestation; with ``trusted_keys``, one must verify it.

    ``trusted_keys=None`` parses without a signature check (to show an attestation signed by
    an unknown key as unverified, never as anyone's). Raises
    :class:`EvalAttestationInvalidError` only.
    """
    try:
        envelope = Envelope.from_json(envelope_bytes, max_bytes=_MAX_ATTESTATION_BYTES)
        signer = None
        if trusted_keys is not None:
            signer = verify_envelope(envelope, trusted_keys).key
        if envelope.payload_type != PAYLOAD_TYPE:
            raise EvalAttestationInvalidError(f"payload type must be {PAYLOAD_TYPE}")
        statement = parse_statement(
            envelope.payload,
            max_bytes=_MAX_ATTESTATION_BYTES,
            predicate_type=EVAL_PREDICATE_TYPE,
        )
    except LicensingError as exc:
        raise EvalAttestationInvalidError(f"evaluation attestation: {exc.message}") from None
    if len(statement.subjects) != 1 or statement.subjects[0].sha256_hex is None:
        raise EvalAttestationInvalidError("an evaluation attestation names one release digest")
    return EvalAttestation(envelope, statement, signer)
