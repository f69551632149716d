"""Evaluation tasks: the task file format, its data (resolved and checked by sha256), prompts.

A task file (JSON or YAML) names its data and pins it by sha256, so a run and its verifier
score the same documents. The data is a list of documents ``{"id", "fields", "target"}``,
hashed as canonical JSON whatever its source: a JSONL file beside the task, or a builder over
data that installs with Python or a registry package (``release.evals.builtin``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from licensing.canonical import canonical_json
from release.errors import EvalDataNotFoundError, EvalTaskInvalidError

__all__ = [
    "KINDS",
    "METRICS",
    "TASK_FORMAT",
    "EvalDoc",
    "EvalTask",
    "PassCriteria",
    "data_sha256",
    "load_task",
    "resolve_docs",
    "task_from_dict",
]

TASK_FORMAT = "tiergate-eval-task/v1"
KINDS = ("multiple_choice", "generation")
# How an output is scored: a pure function of its text (the log commits to that text by
# digest), so a verifier recomputes every score from the logged outputs alone.
# loglikelihood_acc: multiple choice scored from prompt logprobs (release.evals.logprobs).
METRICS = ("choice_letter", "first_word", "loglikelihood_acc")
_MAX_TASK_BYTES = 64 * 1024
_MAX_DATA_BYTES = 32 * 1024 * 1024
_MAX_DOCS = 100_000
_MAX_TOKENS = 256


@dataclass(frozen=True)
class EvalDoc:
    """One document: a stable id, the fields its prompt is built from, the expected answer."""

    id: str
    fields: Mapping[str, str]
    target: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fields": dict(self.fields), "target": self.target}


@dataclass(frozen=True)
class PassCriteria:
    """The bar, set before the run: the score must reach ``minimum`` (a decimal string)."""

    minimum: str
    statistic: str = "score"  # "score" (point estimate) or "lower_bound" (of the interval)

    def to_dict(self) -> dict[str, str]:
        return {"minimum": self.minimum, "statistic": self.statistic}


@dataclass(frozen=True)
class EvalTask:
    name: str
    version: str
    kind: str
    source: Mapping[str, str]
    data_sha256: str
    prompt_template: str
    metric: str
    max_tokens: int
    pass_criteria: PassCriteria
    choices: tuple[str, ...] = ()
    limit: int | None = None
    base_dir: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": TASK_FORMAT,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "source": dict(self.source),
            "data_sha256": self.data_sha256,
            "prompt_template": self.prompt_template,
            "metric": self.metric,
            "max_tokens": self.max_tokens,
            "pass_criteria": self.pass_criteria.to_dict(),
            "choices": list(self.choices),
        }
        if self.limit is not None:
            out["limit"] = self.limit
        return out

    @property
    def sha256(self) -> str:
        """Digest of the task definition (canonical JSON): what pre-registration commits to."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    def choice_prompts(self, doc: EvalDoc) -> list[str]:
        """``loglikelihood_acc``: one prompt per choice, the context then `` <choice>`` (the
        continuation lm-evaluation-harness scores, its default target delimiter)."""
        context = self.prompt(doc)
        return [f"{context} {choice}" for choice in self.choices]

    def prompt(self, doc: EvalDoc) -> str:
        """The prompt sent for ``doc``: ``$field`` placeholders (no attribute access, no code)."""
        try:
            return string.Template(self.prompt_template).substitute(doc.fields)
        except (KeyError, ValueError) as exc:
            raise EvalTaskInvalidError(
                f"task {self.name}: prompt template does not fit document {doc.id}: {exc}"
            ) from None


def _text(raw: Mapping[str, Any], key: str, *, limit: int = 200) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise EvalTaskInvalidError(f"task field {key!r} must be a non-empty string")
    return value


def task_from_dict(raw: object, *, base_dir: Path | None = None) -> EvalTask:
    """Validate a parsed task document; raises :class:`EvalTaskInvalidError` only."""
    if not isinstance(raw, dict):
        raise EvalTaskInvalidError("a task file holds one object")
    if raw.get("format", TASK_FORMAT) != TASK_FORMAT:
        raise EvalTaskInvalidError(f"task format must be {TASK_FORMAT}")
    kind = _text(raw, "kind")
    metric = _text(raw, "metric")
    if kind not in KINDS:
        raise EvalTaskInvalidError(f"task kind must be one of {', '.join(KINDS)}")
    if metric not in METRICS:
        raise EvalTaskInvalidError(f"task metric must be one of {', '.join(METRICS)}")
    source = raw.get("source")
    if (
        not isinstance(source, dict)
        or not source
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in source.items())
    ):
        raise EvalTaskInvalidError("task source must be an object of strings")
    digest = _text(raw, "data_sha256", limit=64)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise EvalTaskInvalidError("data_sha256 must be 64 lowercase hex digits")
    max_tokens = raw.get("max_tokens")
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= _MAX_TOKENS:
        raise EvalTaskInvalidError(f"max_tokens must be an integer in 1..{_MAX_TOKENS}")
    criteria = raw.get("pass_criteria")
    if not isinstance(criteria, dict):
        raise EvalTaskInvalidError("pass_criteria must be an object")
    minimum = _text(criteria, "minimum", limit=16)
    statistic = criteria.get("statistic", "score")
    if statistic not in ("score", "lower_bound"):
        raise EvalTaskInvalidError("pass_criteria.statistic must be score or lower_bound")
    try:
        from decimal import Decimal, InvalidOperation

        if not Decimal(0) <= Decimal(minimum) <= Decimal(1):
            raise InvalidOperation
    except InvalidOperation:
        raise EvalTaskInvalidError("pass_criteria.minimum must be a decimal in [0, 1]") from None
    choices = raw.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) and c for c in choices):
        raise EvalTaskInvalidError("choices must be a list of labels")
    if metric == "loglikelihood_acc" and kind != "multiple_choice":
        raise EvalTaskInvalidError("loglikelihood_acc scores a multiple_choice task")
    if kind == "multiple_choice" and len(choices) < 2:
        raise EvalTaskInvalidError("a multiple-choice task needs at least two choice labels")
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= _MAX_DOCS):
        raise EvalTaskInvalidError(f"limit must be an integer in 1..{_MAX_DOCS}")
    return EvalTask(
        name=_text(raw, "name", limit=100),
        version=_text(raw, "version", limit=40),
        kind=kind,
        source=dict(source),
        data_sha256=digest,
        prompt_template=_text(raw, "prompt_template", limit=4000),
        metric=metric,
        max_tokens=max_tokens,
        pass_criteria=PassCriteria(minimum=minimum, statistic=statistic),
        choices=tuple(choices),
        limit=limit,
        base_dir=base_dir,
    )


def load_task(path: Path) -> EvalTask:
    """Read a task file (``.json``, ``.yaml`` or ``.yml``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalDataNotFoundError(f"task file {path} cannot be read: {exc.strerror}") from None
    if len(data) > _MAX_TASK_BYTES:
        raise EvalTaskInvalidError(f"task file {path.name} is larger than {_MAX_TASK_BYTES} bytes")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(data)
        else:
            raw = json.loads(data)
    except Exception as exc:  # any parser failure is the file's fault
        raise EvalTaskInvalidError(f"task file {path.name} is not valid: {exc}") from None
    return task_from_dict(raw, base_dir=path.parent)


def data_sha256(docs: list[EvalDoc]) -> str:
    return hashlib.sha256(canonical_json([d.to_dict() for d in docs])).hexdigest()


def _docs_from_jsonl(task: EvalTask, name: str) -> list[EvalDoc]:
    path = Path(name) if task.base_dir is None else task.base_dir / name
    try:
        if path.stat().st_size > _MAX_DATA_BYTES:
            raise EvalTaskInvalidError(f"{path.name} is larger than {_MAX_DATA_BYTES} bytes")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataNotFoundError(
            f"task {task.name}: data file {name} cannot be read: {exc}"
        ) from None
    docs = []
    for number, line in enumerate(lines[:_MAX_DOCS], 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            fields = raw["fields"]
            doc = EvalDoc(
                str(raw["id"]), {str(k): str(v) for k, v in fields.items()}, raw["target"]
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise EvalTaskInvalidError(f"{name} line {number} is not a document") from None
        docs.append(doc)
    return docs


def resolve_docs(task: EvalTask) -> list[EvalDoc]:
    """The task's documents, checked against ``data_sha256``; nothing is sent before this.

    Raises :class:`EvalDataNotFoundError` when the source is missing or holds other data.
    """
    source = task.source
    if "path" in source:
        docs = _docs_from_jsonl(task, source["path"])
    elif "builder" in source:
        from release.evals.builtin import build_docs

        docs = build_docs(source["builder"], source)
    else:
        raise EvalTaskInvalidError("task source needs a path or a builder")
    if not docs:
        raise EvalDataNotFoundError(f"task {task.name}: its data source holds no documents")
    found = data_sha256(docs)
    if found != task.data_sha256:
        raise EvalDataNotFoundError(
            f"task {task.name}: the data found has sha256 {found}, not the {task.data_sha256} "
            "the task names (another version of the source?)"
        )
    if len({d.id for d in docs}) != len(docs):
        raise EvalTaskInvalidError(f"task {task.name}: document ids repeat")
    return docs[: task.limit] if task.limit is not None else docs


def import_attribute(module: str, attribute: str) -> Any:
    """``module.attribute`` of an installed package, or :class:`EvalDataNotFoundError`."""
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        raise EvalDataNotFoundError(f"data module {module} is not installed") from None
    try:
        return getattr(loaded, attribute)
    except AttributeError:
        raise EvalDataNotFoundError(f"data module {module} has no {attribute}") from None
