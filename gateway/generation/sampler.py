"""Running ``generate`` with the watermark applied at sampling time, for one or many requests.

Every row of a batch carries its own call tag (the multi-bit payload); temperature and top-p
run inside the watermark library's processor list (the watermark last), and ``generate`` is
told to add no warpers of its own. torch and transformers are imported here, lazily.
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


@dataclass
class SampleJob:
    prompt_ids: list[int]
    params: SamplingParams
    payloads: list[int]  # one call tag per choice
    on_token: Callable[[int | None], None] | None = None  # streaming: each id, then None
    cancel: threading.Event = field(default_factory=threading.Event)


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


def _stopping(jobs: list[SampleJob]) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):  # type: ignore[misc]
        """Stops when every job is cancelled (a stop sequence seen, or the client gone)."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            done = all(job.cancel.is_set() for job in jobs)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

    return StoppingCriteriaList([Cancelled()])


def _streamer(on_token: Callable[[int | None], None]) -> Any:
    from transformers.generation.streamers import BaseStreamer

    class Streamer(BaseStreamer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # the first call carries the prompt
                self.prompt_seen = True
                return
            for token in value.reshape(-1).tolist():
                on_token(int(token))

        def end(self) -> None:
            on_token(None)

    return Streamer()


def run_jobs(
    loaded: LoadedModel, config: WatermarkConfig, key: WatermarkKey, jobs: list[SampleJob]
) -> list[list[Choice]]:
    """Generate every job's choices in one batch; jobs must share ``params.batch_key()``."""
    import torch

    tokenizer = loaded.tokenizer
    params = jobs[0].params
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    eos = tokenizer.eos_token_id
    rows = [job.prompt_ids for job in jobs for _ in job.payloads]
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
    streaming = len(jobs) == 1 and jobs[0].on_token is not None and len(rows) == 1
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
            # Only a stream can be cancelled mid-way (stop sequence seen, client gone); a
            # criterion costs a little every step, so batches run without one.
            stopping_criteria=_stopping(jobs) if streaming else None,
            pad_token_id=pad,
            eos_token_id=eos,
            return_dict_in_generate=True,
            output_scores=want_scores,
            streamer=_streamer(jobs[0].on_token) if streaming and jobs[0].on_token else None,
        )
    generated = out.sequences[:, width:].tolist()
    steps = list(out.scores) if want_scores and out.scores is not None else []
    results: list[list[Choice]] = []
    row = 0
    for job in jobs:
        choices = []
        for _ in job.payloads:
            choices.append(_finish(tokenizer, generated[row], steps, row, job.params, eos))
            row += 1
        results.append(choices)
    return results


def _finish(
    tokenizer: Any, ids: list[int], steps: list[Any], row: int, params: SamplingParams, eos: Any
) -> Choice:
    finish = "length"
    eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
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
            # Keep the ids that the returned text came from (for usage and logprobs).
            kept = 0
            while kept < len(ids) and len(
                tokenizer.decode(ids[: kept + 1], skip_special_tokens=True)
            ) <= len(text):
                kept += 1
            ids = ids[:kept]
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
