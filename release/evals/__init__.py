"""Evaluations as evidence: task files, scoring, the ``eval/v1`` attestation, verification.

Pure: the runner that drives a gateway lives in :mod:`release.evals.runner` (httpx only).
"""

from __future__ import annotations

from release.evals.attestation import EVAL_PREDICATE_TYPE, EvalAttestation, open_eval_attestation
from release.evals.scoring import aggregate, score_output
from release.evals.task import EvalDoc, EvalTask, load_task, resolve_docs
from release.evals.verify import VerifiedEvaluation, verify_evaluation

__all__ = [
    "EVAL_PREDICATE_TYPE",
    "EvalAttestation",
    "EvalDoc",
    "EvalTask",
    "VerifiedEvaluation",
    "aggregate",
    "load_task",
    "open_eval_attestation",
    "resolve_docs",
    "score_output",
    "verify_evaluation",
]
