"""Evaluation runs: pre-register the bar in the log before the first sample, list the run's
logged calls, and seal the run (log the list of its calls once).

A run's calls are ordinary generation calls whose ``metadata`` names the run and the
document (``tiergate_eval_run``, ``tiergate_eval_doc``); the gateway logs that metadata in
their ``generation.completed`` (scoring calls: ``generation.scored``) entries. The seal is
built from the log itself (every call of
the run by its owner after the pre-registration), so an attestation that leaves a call out,
or counts a retry instead of the first answer, disagrees with a logged fact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.engine import begin_write
from gateway.db.models import EvaluationRun, LogEntry
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.ledger.events import Actor, record_event
from gateway.services.models import resolve_model
from release.evals.verify import RUN_DOC_KEY, RUN_ID_KEY

__all__ = [
    "EvaluationRunExists",
    "EvaluationRunNotFound",
    "EvaluationRunSealed",
    "RunView",
    "get_run",
    "preregister_run",
    "run_calls",
    "seal_run",
]

# A run's calls: generations, and scoring calls (prompt logprobs, multiple choice).
RUN_CALL_ACTIONS = ("generation.completed", "generation.scored")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TASK_KEYS = frozenset(
    {"name", "version", "kind", "metric", "dataSha256", "taskSha256", "passCriteria"}
)
MAX_DOCUMENTS = 100_000
# A run's calls are found by reading the log after its pre-registration; a run whose calls
# lie further apart than this cannot be sealed (bounds the work of one request).
MAX_SCAN_ENTRIES = 2_000_000
_PAGE = 5_000


class EvaluationRunNotFound(NotFound):
    """No such run, or one of another account (the same answer for both)."""

    code = "evaluation_run_not_found"
    title = "No such evaluation run"


class EvaluationRunExists(Conflict):
    """The run id is taken: a run id names one pre-registration, ever."""

    code = "evaluation_run_exists"
    title = "Evaluation run already pre-registered"


class EvaluationRunSealed(Conflict):
    """The run is sealed: its list of calls is logged and final."""

    code = "evaluation_run_sealed"
    title = "Evaluation run already sealed"


@dataclass(frozen=True, slots=True)
class RunView:
    run_id: str
    model: str
    state: str
    preregistration_index: int
    seal_index: int | None
    samples: list[tuple[str, int]]  # (document id, log index) of every call of the run


def _check_task(task: dict[str, Any]) -> dict[str, Any]:
    if set(task) != _TASK_KEYS:
        raise ValidationFailed(f"task must name exactly {', '.join(sorted(_TASK_KEYS))}")
    for key in _TASK_KEYS - {"passCriteria"}:
        if not isinstance(task[key], str) or not 0 < len(task[key]) <= 160:
            raise ValidationFailed(f"task.{key} must be a short string")
    criteria = task["passCriteria"]
    if not isinstance(criteria, dict) or set(criteria) != {"minimum", "statistic"}:
        raise ValidationFailed("task.passCriteria names minimum and statistic")
    if not all(isinstance(v, str) and len(v) <= 16 for v in criteria.values()):
        raise ValidationFailed("task.passCriteria values are short strings")
    return task


def logged_sampling(
    temperature: float, top_p: float, max_tokens: int, seed: int | None
) -> dict[str, Any]:
    """Sampling settings as a ``generation.completed`` entry logs them (floats as repr)."""
    return {
        "temperature": repr(float(temperature)),
        "top_p": repr(float(top_p)),
        "max_tokens": max_tokens,
        "seed": seed,
    }


def preregister_run(
    session: Session,
    principal: Principal,
    *,
    run_id: str,
    model: str,
    task: dict[str, Any],
    sampling: dict[str, Any],
    documents: int,
    now: datetime,
) -> RunView:
    """Log ``evaluation.preregistered`` (task, bar, sampling, the resolved release) and open
    the run. Refuses a taken run id: the bar of a run is set once."""
    if _RUN_ID.fullmatch(run_id) is None:
        raise ValidationFailed("run_id is 16-64 characters of A-Z, a-z, 0-9, _ and -")
    if not 1 <= documents <= MAX_DOCUMENTS:
        raise ValidationFailed(f"documents must be in 1..{MAX_DOCUMENTS}")
    _check_task(task)
    release, ref = resolve_model(session, principal, model, now, for_use=True)
    assert release.id is not None
    begin_write(session)
    if session.get(EvaluationRun, run_id) is not None:
        raise EvaluationRunExists(f"run {run_id} is already pre-registered")
    fields = {
        "run_id": run_id,
        "model": {
            "name": ref.name,
            "repo_id": ref.repo_id,
            "version": ref.version,
            "tier": ref.tier,
            "release_digest": ref.statement_digest,
        },
        "task": task,
        "sampling": sampling,
        "documents": documents,
    }
    index = record_event(
        session,
        action="evaluation.preregistered",
        actor=Actor.of(principal),
        resource=f"model:{ref.name}",
        now=now,
        org_id=release.org_id,
        fields=fields,
    )
    session.add(
        EvaluationRun(
            run_id=run_id,
            release_id=release.id,
            tier=ref.tier,
            model=ref.name,
            user_id=principal.user_id,
            preregistration_index=index,
            state="open",
            created_at=now,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        raise EvaluationRunExists(f"run {run_id} is already pre-registered") from None
    return RunView(run_id, ref.name, "open", index, None, [])


def _own_run(session: Session, principal: Principal, run_id: str) -> EvaluationRun:
    run = session.get(EvaluationRun, run_id, populate_existing=True)
    if run is None or run.user_id != principal.user_id:
        raise EvaluationRunNotFound(f"no evaluation run {run_id[:64]}")
    return run


def run_calls(
    session: Session, run: EvaluationRun, *, before: int | None = None
) -> list[tuple[str, int]]:
    """(document id, log index) of every logged call of ``run`` by its owner, in log order."""
    found: list[tuple[str, int]] = []
    after = run.preregistration_index
    last = after + MAX_SCAN_ENTRIES
    while True:
        query = (
            select(LogEntry.idx, LogEntry.entry)
            .where(
                col(LogEntry.idx) > after,
                col(LogEntry.idx) <= last,
                col(LogEntry.action).in_(RUN_CALL_ACTIONS),
                LogEntry.actor_user_id == run.user_id,
            )
            .order_by(col(LogEntry.idx))
            .limit(_PAGE)
        )
        if before is not None:
            query = query.where(col(LogEntry.idx) < before)
        rows = session.exec(query).all()
        for idx, entry in rows:
            metadata = json.loads(entry).get("fields", {}).get("metadata") or {}
            if metadata.get(RUN_ID_KEY) == run.run_id and isinstance(
                metadata.get(RUN_DOC_KEY), str
            ):
                found.append((metadata[RUN_DOC_KEY], int(idx)))
        if len(rows) < _PAGE:
            return found
        after = int(rows[-1][0])


def _view(session: Session, run: EvaluationRun) -> RunView:
    samples = run_calls(session, run, before=run.seal_index)
    return RunView(
        run.run_id, run.model, run.state, run.preregistration_index, run.seal_index, samples
    )


def get_run(session: Session, principal: Principal, run_id: str) -> RunView:
    """The run and its logged calls so far (a resumed runner skips the documents listed)."""
    return _view(session, _own_run(session, principal, run_id))


def seal_run(session: Session, principal: Principal, run_id: str, now: datetime) -> RunView:
    """Log ``evaluation.sealed`` with every call of the run, once (``open`` -> ``sealed``)."""
    begin_write(session)
    run = _own_run(session, principal, run_id)
    if run.state != "open":
        raise EvaluationRunSealed(f"run {run_id} is sealed (log index {run.seal_index})")
    samples = run_calls(session, run)
    index = record_event(
        session,
        action="evaluation.sealed",
        actor=Actor.of(principal),
        resource=f"evaluation:{run_id}",
        now=now,
        fields={
            "run_id": run_id,
            "preregistration_index": run.preregistration_index,
            "samples": [[doc, idx] for doc, idx in samples],
        },
    )
    done = session.execute(
        update(EvaluationRun)
        .where(col(EvaluationRun.run_id) == run_id, col(EvaluationRun.state) == "open")
        .values(state="sealed", seal_index=index)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise EvaluationRunSealed(f"run {run_id} was sealed meanwhile")
    session.refresh(run)
    return _view(session, run)
