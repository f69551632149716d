"""Reasoning traces: split a chat answer's ``<think>...</think>`` block from its answer.

A reasoning model writes its trace between an open and a close marker, then its answer. The
markers come from the release (:func:`markers_for`: the tokenizer's config, else its chat
template, else ``<think>``/``</think>``). The rule, the same for a whole text
(:func:`split_reasoning`) and for a stream cut anywhere (:class:`ReasoningSplitter`):

- the text opens a trace when, after leading whitespace, it starts with the open marker, or
  when the prompt already ended inside one (a template that writes ``<think>`` for the model);
- the trace is everything up to the first close marker, exactly (no stripping); the answer is
  everything after it, exactly; the markers themselves are in neither;
- a trace never closed (the call ran out of tokens) is all trace, with an empty answer;
- a text that does not open a trace is all answer (markers later in it stay answer text).

The streaming splitter holds back only what could still be the start of a marker (at most a
marker's length, plus leading whitespace before the first one), never the answer.

:func:`check_trace` proves a trace shown later is the one generated: it compares its digest
with the ``reasoning_sha256`` the ``generation.completed`` entry logged for that choice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_MARKERS",
    "ReasoningMarkers",
    "ReasoningSplit",
    "ReasoningSplitter",
    "check_trace",
    "markers_for",
    "sha256_of",
    "split_reasoning",
]

Kind = Literal["reasoning", "content"]


@dataclass(frozen=True)
class ReasoningMarkers:
    open: str
    close: str

    def __post_init__(self) -> None:
        if not self.open or not self.close:
            raise ValueError("reasoning markers must be non-empty")


DEFAULT_MARKERS = ReasoningMarkers("<think>", "</think>")

# Marker pairs recognised in a chat template, most specific first.
_KNOWN = (
    ReasoningMarkers("<thinking>", "</thinking>"),
    ReasoningMarkers("◁think▷", "◁/think▷"),
    DEFAULT_MARKERS,
)


def markers_for(tokenizer: Any) -> ReasoningMarkers:
    """The release's reasoning markers.

    ``reasoning_start_token``/``reasoning_end_token`` in the tokenizer's config
    (``tokenizer_config.json``) win; else a known pair its chat template writes; else
    ``<think>``/``</think>``.
    """
    kwargs = getattr(tokenizer, "init_kwargs", None) or {}
    start, end = kwargs.get("reasoning_start_token"), kwargs.get("reasoning_end_token")
    if isinstance(start, str) and isinstance(end, str) and start and end:
        return ReasoningMarkers(start, end)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        for pair in _KNOWN:
            if pair.open in template and pair.close in template:
                return pair
    return DEFAULT_MARKERS


@dataclass(frozen=True)
class ReasoningSplit:
    """One choice's text split: ``reasoning`` is None when it opened no trace."""

    reasoning: str | None
    answer: str


def split_reasoning(
    text: str, markers: ReasoningMarkers = DEFAULT_MARKERS, *, inside: bool = False
) -> ReasoningSplit:
    """Split a whole text (``inside``: the prompt ended with the open marker)."""
    if not inside:
        stripped = text.lstrip()
        if not stripped.startswith(markers.open):
            return ReasoningSplit(None, text)
        text = stripped[len(markers.open) :]
    end = text.find(markers.close)
    if end < 0:
        return ReasoningSplit(text, "")
    return ReasoningSplit(text[:end], text[end + len(markers.close) :])


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class ReasoningSplitter:
    """Streaming :func:`split_reasoning`: feed text pieces, get (kind, text) pieces out.

    States: ``start`` (leading whitespace and a possible open marker held back), ``reasoning``
    (the end that could begin the close marker held back), ``content`` (passed straight on).
    """

    def __init__(self, markers: ReasoningMarkers = DEFAULT_MARKERS, *, inside: bool = False):
        self.markers = markers
        self.state: Literal["start", "reasoning", "content"] = "reasoning" if inside else "start"
        self.held = ""
        self.opened = inside

    def feed(self, piece: str) -> list[tuple[Kind, str]]:
        out: list[tuple[Kind, str]] = []
        self.held += piece
        if self.state == "start":
            stripped = self.held.lstrip()
            opener = self.markers.open
            if stripped.startswith(opener):
                self.state, self.opened = "reasoning", True
                self.held = stripped[len(opener) :]
            elif opener.startswith(stripped):
                return out  # only whitespace, or the opener cut short: wait
            else:
                # No trace: all that was held (whitespace included) is answer.
                held, self.state, self.held = self.held, "content", ""
                out.append(("content", held))
                return out
        if self.state == "reasoning":
            close = self.markers.close
            end = self.held.find(close)
            if end >= 0:
                trace, rest = self.held[:end], self.held[end + len(close) :]
                self.state, self.held = "content", ""
                if trace:
                    out.append(("reasoning", trace))
                if rest:
                    out.append(("content", rest))
                return out
            keep = _partial_suffix(self.held, close)
            trace = self.held[: len(self.held) - keep]
            self.held = self.held[len(self.held) - keep :]
            if trace:
                out.append(("reasoning", trace))
            return out
        # content: everything passes
        self.held = ""
        if piece:
            out.append(("content", piece))
        return out

    def finish(self) -> list[tuple[Kind, str]]:
        """What is still held when the text ends."""
        held, self.held = self.held, ""
        if not held:
            return []
        if self.state == "start":
            self.state = "content"
            return [("content", held)]
        return [("reasoning" if self.state == "reasoning" else "content", held)]


def sha256_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_trace(
    entry: bytes | str,
    choice: int,
    *,
    reasoning: str | None = None,
    answer: str | None = None,
) -> list[str]:
    """Check a reasoning trace and/or answer against one ``generation.completed`` entry.

    ``entry`` is the log entry (its canonical JSON, as a receipt carries it). Returns the
    problems found (empty: every text given matches the digest logged for ``choice``).
    """
    try:
        body = json.loads(entry)
        fields = body["fields"]
        outputs = fields["outputs"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return ["the entry is not a generation.completed entry"]
    if body.get("action") != "generation.completed":
        return [f"the entry is a {body.get('action')!r} entry, not generation.completed"]
    output = next((o for o in outputs if isinstance(o, dict) and o.get("index") == choice), None)
    if output is None:
        return [f"the entry has no choice {choice}"]
    problems = []
    for name, text in (("reasoning", reasoning), ("answer", answer)):
        if text is None:
            continue
        logged = output.get(f"{name}_sha256")
        if logged is None:
            problems.append(f"choice {choice} logged no {name} digest")
        elif logged != sha256_of(text):
            problems.append(f"the {name} of choice {choice} is not the one logged ({logged})")
    return problems
