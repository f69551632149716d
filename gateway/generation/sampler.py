"""Running ``generate`` with the watermark applied at sampling time, for one or many requests.

Every row of a batch carries its own call tag (the multi-bit payload); temperature and top-p
run inside the watermark library's processor list (the watermark last), and ``generate`` is
told to add no warpers of its own. Stop sequences end their row while it is generated (a
stopping criterion decodes each row's tail), not after ``max_tokens``. torch and
transformers are imported here, lazily.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.generation.models import LoadedModel
from watermark import WatermarkConfig, WatermarkKey, build_logits_processors

__all__ = ["Choice", "SampleJob", "SamplingParams", "apply_stop", "run_jobs"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None  # None: no logprobs; k >= 0: chosen token plus top k

    def batch_key(self) -> tuple[object, ...]:
        """Requests with equal keys can share one ``generate`` call."""
        return (self.max_tokens, self.temperature, self.top_p, self.logprobs)


# Streaming: each decoding step's token of every choice (by choice index), then None.
OnTokens = Callable[[list[int] | None], None]


@dataclass
class SampleJob:
    """One call: ``n`` choices of each prompt, choice ``k`` sampling prompt ``k // n``."""

    prompts: list[list[int]]
    params: SamplingParams
    payloads: list[int]  # one call tag per choice, by choice index
    on_token: OnTokens | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.prompts or len(self.payloads) % len(self.prompts):
            raise ValueError("a job needs the same number of call tags for every prompt")

    @property
    def n(self) -> int:
        return len(self.payloads) // len(self.prompts)

    def rows(self) -> list[list[int]]:
        """The prompt of every choice, by choice index."""
        n = self.n
        return [self.prompts[k // n] for k in range(len(self.payloads))]


@dataclass(frozen=True, slots=True)
class Choice:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" or "length"
    logprobs: list[float] | None = None
    top_logprobs: list[dict[str, float]] | None = None


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` cut before the first stop sequence, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class RowStops:
    """Per-row stopping for ``generate``: a stop sequence in the row's text, or its job cancelled.

    Called after every step with the whole ``input_ids``; answers one bool per row (generate
    pads a stopped row from then on and ends when every row has stopped). A stop can only
    appear with the newest token, so only a tail of the row is decoded: enough tokens for the
    longest stop sequence plus the newest token's text; a hit is confirmed on the whole row,
    because decoding from the middle of a sequence can differ at its left edge. ``ended``
    records, per stopped row, how many tokens it had generated.
    """

    def __init__(self, tokenizer: Any, jobs: list[SampleJob], width: int, eos: set[int]) -> None:
        self.tokenizer = tokenizer
        self.width = width
        self.eos = eos
        self.rows: list[tuple[SampleJob, tuple[str, ...], int]] = []
        for job in jobs:
            stops = tuple(s for s in job.params.stop if s)
            longest = max((len(s) for s in stops), default=0)
            self.rows.extend((job, stops, longest) for _ in job.payloads)
        self.ended: dict[int, int] = {}
        self._finished: set[int] = set()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        length = int(input_ids.shape[1]) - self.width
        done = []
        for r, (job, stops, longest) in enumerate(self.rows):
            if r in self._finished:
                done.append(True)
                continue
            row = input_ids[r]
            if job.cancel.is_set() or (stops and self._hit(row, length, stops, longest)):
                self.ended[r] = length
                self._finished.add(r)
            elif int(row[-1]) in self.eos:  # generate ends the row itself; stop looking at it
                self._finished.add(r)
            done.append(r in self._finished)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _hit(self, row: Any, length: int, stops: tuple[str, ...], longest: int) -> bool:
        decode = self.tokenizer.decode
        window = min(length, longest + 2)
        while True:
            text: str = decode(row[-window:].tolist(), skip_special_tokens=True)
            if len(text) > longest or window >= length:
                break
            window = min(length, window * 2)
        if not any(s in text for s in stops):
            return False
        whole: str = decode(row[-length:].tolist(), skip_special_tokens=True)
        return any(s in whole for s in stops)


def _streamer(on_token: OnTokens) -> Any:
    from transformers.generation.streamers import BaseStreamer

    class Streamer(BaseStreamer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # the first call carries the prompt
                self.prompt_seen = True
                return
            on_token([int(token) for token in value.reshape(-1).tolist()])

        def end(self) -> None:
            on_token(None)

    return Streamer()


def _eos_ids(eos: Any) -> set[int]:
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, list | tuple) else {int(eos)}


def run_jobs(
    loaded: LoadedModel, config: WatermarkConfig, key: WatermarkKey, jobs: list[SampleJob]
) -> list[list[Choice]]:
    """Generate every job's choices in one batch; jobs must share ``params.batch_key()``."""
    import torch

    tokenizer = loaded.tokenizer
    params = jobs[0].params
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    eos = tokenizer.eos_token_id
    rows = [row for job in jobs for row in job.rows()]
    payloads = [p for job in jobs for p in job.payloads]
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    sampling = params.temperature > 0
    processors = build_logits_processors(
        config,
        key,
        payload=payloads,
        temperature=params.temperature if sampling else 1.0,
        top_p=params.top_p if sampling and params.top_p < 1.0 else None,
        # generate() hands processors a fresh float copy of the step's logits and we never
        # ask for output_logits (the raw ones), so biasing in place is safe and saves a
        # B x V allocation per step.
        inplace=True,
    )
    on_token = jobs[0].on_token if len(jobs) == 1 else None
    eos_ids = _eos_ids(eos)
    # A criterion costs a little every step: only rows that can stop early (a stop sequence,
    # or a stream whose client may go away) get one.
    stops = (
        RowStops(tokenizer, jobs, width, eos_ids)
        if on_token is not None or any(job.params.stop for job in jobs)
        else None
    )
    if params.seed is not None:
        # Only unbatched jobs carry a seed, and one executor thread runs generate: the
        # global generator is ours for the duration.
        torch.manual_seed(params.seed)
    want_scores = params.logprobs is not None
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=sampling,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max(job.params.max_tokens for job in jobs),
            logits_processor=processors,
            stopping_criteria=_criteria(stops) if stops is not None else None,
            pad_token_id=pad,
            eos_token_id=eos,
            return_dict_in_generate=True,
            output_scores=want_scores,
            streamer=_streamer(on_token) if on_token is not None else None,
        )
    generated = out.sequences[:, width:].tolist()
    steps = list(out.scores) if want_scores and out.scores is not None else []
    ended = stops.ended if stops is not None else {}
    results: list[list[Choice]] = []
    row = 0
    for job in jobs:
        choices = []
        for _ in job.payloads:
            ids = generated[row][: ended.get(row, len(generated[row]))]
            choices.append(_finish(tokenizer, ids, steps, row, job.params, eos_ids))
            row += 1
        results.append(choices)
    return results


def _criteria(stops: RowStops) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Criterion(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return stops(input_ids, scores)

    return StoppingCriteriaList([Criterion()])


def _kept_tokens(tokenizer: Any, ids: list[int], text: str) -> int:
    """The fewest leading ``ids`` whose text covers ``text`` (a prefix of their decoding)."""
    kept = len(ids)
    # Generation stops as soon as a stop sequence shows, so the cut is near the end.
    while kept > 0 and len(tokenizer.decode(ids[: kept - 1], skip_special_tokens=True)) >= len(
        text
    ):
        kept -= 1
    return kept


def _finish(
    tokenizer: Any,
    ids: list[int],
    steps: list[Any],
    row: int,
    params: SamplingParams,
    eos_ids: set[int],
) -> Choice:
    finish = "length"
    for i, token in enumerate(ids):
        if token in eos_ids:
            ids, finish = ids[:i], "stop"
            break
    ids = ids[: params.max_tokens]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if params.stop:
        text, stopped = apply_stop(text, params.stop)
        if stopped:
            finish = "stop"
            # Usage and logprobs count the tokens the returned text came from.
            ids = ids[: _kept_tokens(tokenizer, ids, text)]
    logprobs: list[float] | None = None
    tops: list[dict[str, float]] | None = None
    if params.logprobs is not None and steps:
        import torch

        logprobs, tops = [], []
        for i, token in enumerate(ids):
            dist = torch.log_softmax(steps[i][row].float(), dim=-1)
            logprobs.append(float(dist[token]))
            if params.logprobs > 0:
                values, indices = dist.topk(params.logprobs)
                tops.append(
                    {
                        tokenizer.decode([int(j)]): float(v)
                        for v, j in zip(values.tolist(), indices.tolist(), strict=True)
                    }
                )
    return Choice(ids, text, finish, logprobs, tops if params.logprobs else None)
