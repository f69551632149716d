"""A micro-batcher: requests for the same model and sampling settings that arrive within a few
milliseconds share one ``generate`` call, run on a dedicated executor off the event loop.

On a CPU or GPU a decoding step costs nearly the same for 1 row as for 8 (it is bound by
Python overhead and weight reads, not arithmetic), so batching concurrent calls raises
throughput several-fold. A lone request on an idle executor waits at most ``window`` seconds
for company (``window`` 0: none); while a batch runs, arrivals wait for it to finish and then
go together, so under load batches form whatever the window.
Seeded or streaming requests run alone: a seed must not be shared, a stream has one reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from gateway.generation.models import LoadedModel
from gateway.generation.sampler import Choice, SampleJob

__all__ = ["MicroBatcher", "RunJobs"]

RunJobs = Callable[[LoadedModel, list[SampleJob]], list[list[Choice]]]


@dataclass
class _Pending:
    loaded: LoadedModel
    jobs: list[SampleJob] = field(default_factory=list)
    futures: list[asyncio.Future[list[Choice]]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    def __init__(
        self, run: RunJobs, executor: Executor, *, window_seconds: float, max_rows: int
    ) -> None:
        self._run = run
        self._executor = executor
        self.window_seconds = window_seconds
        self.max_rows = max_rows
        self._pending: dict[tuple[object, ...], _Pending] = {}
        self.batches = 0
        self.batched_jobs = 0
        self._running = 0

    async def submit(self, loaded: LoadedModel, job: SampleJob) -> list[Choice]:
        loop = asyncio.get_running_loop()
        rows = len(job.payloads)
        alone = job.params.seed is not None or job.on_token is not None or rows >= self.max_rows
        if alone:
            results = await loop.run_in_executor(self._executor, self._run, loaded, [job])
            return results[0]
        key = (loaded.ref.name, id(loaded), job.params.batch_key())
        pending = self._pending.get(key)
        if pending is not None and pending.rows + rows > self.max_rows:
            self._flush(key)
            pending = None
        if pending is None:
            pending = _Pending(loaded)
            self._pending[key] = pending
            if self.window_seconds > 0:
                pending.timer = loop.call_later(self.window_seconds, self._on_timer, key)
        future: asyncio.Future[list[Choice]] = loop.create_future()
        pending.jobs.append(job)
        pending.futures.append(future)
        pending.rows += rows
        if pending.rows >= self.max_rows or (self.window_seconds <= 0 and self._running == 0):
            self._flush(key)
        return await future

    def _on_timer(self, key: tuple[object, ...]) -> None:
        # Busy: the batch is dispatched when the running one ends, with whatever joined it.
        if self._running == 0:
            self._flush(key)

    def _flush(self, key: tuple[object, ...]) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        self.batches += 1
        self.batched_jobs += len(pending.jobs)
        self._running += 1
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(self._executor, self._run, pending.loaded, pending.jobs)
        task.add_done_callback(lambda done: self._finished(done, pending.futures))

    def _finished(
        self, done: asyncio.Future[list[list[Choice]]], futures: list[asyncio.Future[list[Choice]]]
    ) -> None:
        self._running -= 1
        _deliver(done, futures)
        if self._running == 0:
            for key in list(self._pending):
                self._flush(key)


def _deliver(
    done: asyncio.Future[list[list[Choice]]], futures: list[asyncio.Future[list[Choice]]]
) -> None:
    error = done.exception()
    for i, future in enumerate(futures):
        if future.done():  # the caller went away
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result()[i])
