"""Built-in tasks over data that installs with Python itself: the reference topics of
``pydoc_data.topics`` (the text ``help()`` shows), turned into documents deterministically.

No randomness but sha256 of stable strings, so every machine with the same data builds the
same documents; the task's ``data_sha256`` (computed here, pinned in a written task file)
catches a Python whose topics differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace

from release.errors import EvalDataNotFoundError, EvalTaskInvalidError
from release.evals.task import EvalDoc, EvalTask, PassCriteria, data_sha256, import_attribute

__all__ = ["BUILTIN_TASKS", "build_docs", "builtin_task"]

_LABELS = ("A", "B", "C", "D")
_EXCERPT_CHARS = 160
_CONTEXT_WORDS = 12

_TOPICS_SOURCE = {"module": "pydoc_data.topics", "attribute": "topics"}


def _rank(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def _topics(source: Mapping[str, str]) -> dict[str, str]:
    topics = import_attribute(source.get("module", ""), source.get("attribute", ""))
    if not isinstance(topics, dict) or not topics:
        raise EvalDataNotFoundError(f"{source.get('module')}.{source.get('attribute')} is empty")
    return {str(k): str(v) for k, v in topics.items()}


def _body(text: str) -> str:
    """A topic's text without its heading (the heading names the answer)."""
    lines = text.splitlines()
    if len(lines) > 2 and set(lines[1].strip()) <= {"*", "=", "-"}:
        lines = lines[2:]
    return " ".join(" ".join(lines).split())


def _multiple_choice(topics: dict[str, str]) -> list[EvalDoc]:
    names = sorted(topics)
    docs = []
    for name in names:
        excerpt = _body(topics[name])[:_EXCERPT_CHARS]
        if len(excerpt) < 40:
            continue
        # Three distractors and the answer's position, fixed by sha256 of the names.
        others = sorted((n for n in names if n != name), key=lambda n: _rank("distractor", name, n))
        position = int(_rank("position", name), 16) % len(_LABELS)
        options = others[:3]
        options.insert(position, name)
        lines = "\n".join(f"{label}. {opt}" for label, opt in zip(_LABELS, options, strict=True))
        docs.append(
            EvalDoc(
                id=name,
                fields={"excerpt": excerpt, "options": lines},
                target=_LABELS[position],
            )
        )
    return docs


def _next_word(topics: dict[str, str]) -> list[EvalDoc]:
    docs = []
    for name in sorted(topics):
        words = _body(topics[name]).split()
        if len(words) <= _CONTEXT_WORDS:
            continue
        docs.append(
            EvalDoc(
                id=name,
                fields={"context": " ".join(words[:_CONTEXT_WORDS])},
                target=words[_CONTEXT_WORDS],
            )
        )
    return docs


_BUILDERS = {"pydoc-topics-mc": _multiple_choice, "pydoc-topics-next-word": _next_word}


def build_docs(builder: str, source: Mapping[str, str]) -> list[EvalDoc]:
    make = _BUILDERS.get(builder)
    if make is None:
        raise EvalTaskInvalidError(f"unknown task builder {builder!r}")
    return make(_topics(source))


def _mc_task() -> EvalTask:
    source = {"builder": "pydoc-topics-mc", **_TOPICS_SOURCE}
    return EvalTask(
        name="pydoc-topics-mc",
        version="1",
        kind="multiple_choice",
        source=source,
        data_sha256=data_sha256(build_docs("pydoc-topics-mc", source)),
        prompt_template=(
            "Which Python reference topic is this excerpt from?\n"
            "Excerpt: $excerpt\n$options\nAnswer:"
        ),
        metric="choice_letter",
        max_tokens=2,
        choices=_LABELS,
        pass_criteria=PassCriteria(minimum="0.25"),
    )


def _mc_loglikelihood_task() -> EvalTask:
    """The multiple-choice task scored from prompt logprobs (how lm-evaluation-harness scores
    multiple choice): the same documents and prompt, each choice letter appended."""
    base = _mc_task()
    return replace(
        base,
        name="pydoc-topics-mc-ll",
        metric="loglikelihood_acc",
        max_tokens=1,  # nothing is sampled; the field stays a valid task's
    )


def _next_word_task() -> EvalTask:
    source = {"builder": "pydoc-topics-next-word", **_TOPICS_SOURCE}
    return EvalTask(
        name="pydoc-topics-next-word",
        version="1",
        kind="generation",
        source=source,
        data_sha256=data_sha256(build_docs("pydoc-topics-next-word", source)),
        prompt_template="$context",
        metric="first_word",
        max_tokens=4,
        pass_criteria=PassCriteria(minimum="0.05"),
    )


BUILTIN_TASKS = {
    "pydoc-topics-mc": _mc_task,
    "pydoc-topics-mc-ll": _mc_loglikelihood_task,
    "pydoc-topics-next-word": _next_word_task,
}


def builtin_task(name: str) -> EvalTask:
    """A built-in task, its ``data_sha256`` taken from this interpreter's data."""
    make = BUILTIN_TASKS.get(name)
    if make is None:
        known = ", ".join(sorted(BUILTIN_TASKS))
        raise EvalTaskInvalidError(f"no built-in task {name!r} (built in: {known})")
    return make()
