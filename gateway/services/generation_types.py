"""The values a generation call passes between its steps: the request, the admitted call,
the result, and the pieces of a stream. Kept apart from :mod:`gateway.services.generation` so
the service module holds the use cases only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlmodel import Session

from gateway.generation.models import LoadedModel
from gateway.generation.prompts import EncodedPrompts, Prompt
from gateway.generation.reasoning import ReasoningMarkers, ReasoningSplit, split_reasoning
from gateway.generation.sampler import Choice, SamplingParams
from gateway.generation.upstream import VllmPool
from gateway.services.admission import CachedModel
from gateway.services.safety import StreamSafety
from safety.scanner import SafetyScanner

__all__ = [
    "AdmittedCall",
    "build_result",
    "GenerationInput",
    "GenerationObserver",
    "GenerationResult",
    "LogHook",
    "StreamEvent",
    "StreamPiece",
]


class GenerationObserver(Protocol):
    """What the generation service reports as it works (the gateway's metrics implement it)."""

    def record_generation(self, model: str, tokens: int) -> None:
        """One call logged, ``tokens`` completion tokens generated."""

    def record_safety_scan(self, seconds: float) -> None:
        """One safety scan (an output, a streamed window) took ``seconds``."""


@dataclass(frozen=True)
class GenerationInput:
    model: str
    params: SamplingParams
    n: int = 1  # choices per prompt
    prompts: list[Prompt] | None = None  # completions: one or more prompts
    messages: list[dict[str, Any]] | None = None  # chat: one conversation
    endpoint: str = "completions"
    # The client chose max_tokens (else it shrinks to the context left, never past it).
    max_tokens_explicit: bool = True
    # The request's metadata (bounded by the HTTP schema), logged with the call as sent.
    metadata: dict[str, str] | None = None


@dataclass
class GenerationResult:
    call_id: str
    created: int
    model: str
    choices: list[Choice]  # by choice index: prompt p's i-th choice is p * n + i
    prompt_tokens: int
    completion_tokens: int
    watermark_key_id: str
    payloads: list[int]
    log_index: int | None = None
    tokenizer: Any = field(default=None, repr=False)
    # Chat: each choice's text split into its reasoning trace and its answer.
    splits: list[ReasoningSplit] | None = None
    logged_at: str | None = None  # the log entry's ``time``
    release_digest: str | None = None  # the release statement's digest (logged with the call)
    attached: Any = None  # what the call's LogHook returned (the Content Credentials)
    # The release's safety policy: each choice's verdict record (services.safety), or None.
    safety: list[dict[str, Any]] | None = None


# Called inside the log transaction once the ``generation.completed`` entry and its call tags
# are written (``result.log_index`` and ``logged_at`` set): rows it adds commit with the
# entry, in one commit; if it raises, none of the call is logged. Its return value becomes
# ``result.attached``. Blocking: it runs in the log append's worker thread.
LogHook = Callable[[Session, GenerationResult], Any]


class StreamPiece(NamedTuple):
    """A piece of one choice's text; chat splits it into ``reasoning`` and ``content``."""

    choice: int  # the choice index
    text: str
    kind: str = "content"


# A streamed call yields pieces of text, then its logged result.
StreamEvent = StreamPiece | GenerationResult


@dataclass
class AdmittedCall:
    """A call past admission: what was charged, its tags, and what generation needs."""

    call_id: str
    model: CachedModel
    loaded: LoadedModel
    encoded: EncodedPrompts
    payloads: list[int]
    charged: int
    window: int
    params: SamplingParams  # the request's, max_tokens fitted to the context
    pool: VllmPool | None  # the remote engine pool, or None: the local engine
    # Chat: the release's reasoning markers, and whether the prompt ended inside a trace.
    markers: ReasoningMarkers | None = None
    inside: bool = False
    # The release's safety policy with its checks (None: it has none), and a stream's windows.
    scanner: SafetyScanner | None = None
    stream_safety: StreamSafety | None = None

    def splits(self, choices: list[Choice]) -> list[ReasoningSplit] | None:
        if self.markers is None:
            return None
        return [split_reasoning(c.text, self.markers, inside=self.inside) for c in choices]


def build_result(
    admitted: AdmittedCall, choices: list[Choice], safety: list[dict[str, Any]] | None = None
) -> GenerationResult:
    """The result of an admitted call whose engine returned ``choices``."""
    if admitted.stream_safety is not None:
        # A stream's last windows are scanned here, before the call is logged.
        choices = admitted.stream_safety.finalize(choices)
        safety = admitted.stream_safety.records
    return GenerationResult(
        call_id=admitted.call_id,
        created=int(time.time()),
        model=admitted.model.ref.name,
        choices=choices,
        prompt_tokens=admitted.encoded.tokens,
        completion_tokens=sum(len(c.token_ids) for c in choices),
        watermark_key_id=admitted.loaded.extras["config"].key_id,
        payloads=admitted.payloads,
        tokenizer=admitted.loaded.tokenizer,
        splits=admitted.splits(choices),
        release_digest=admitted.model.ref.statement_digest,
        safety=safety,
    )
