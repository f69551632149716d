"""The vLLM plugin with a stopwatch, for bench/vllm_watermark_cost.py only (runs in the engine).

Accumulates the time spent in ``update_state`` and ``apply`` and the number of steps that had
tagged rows, and writes them as JSON to ``$TIERGATE_BENCH_TIMING`` every 10 calls, so the
bench can set the plugin's own time against each round's wall time: a cost figure that
machine load cannot blur the way it blurs two throughput runs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from watermark.vllm_plugin import TiergateWatermarkLogitsProcessor


class TimedTiergateWatermarkLogitsProcessor(TiergateWatermarkLogitsProcessor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("TIERGATE_BENCH_TIMING")
        self._totals = {"update_s": 0.0, "apply_s": 0.0, "steps": 0, "tagged_steps": 0}

    def update_state(self, batch_update: Any) -> None:
        start = time.perf_counter()
        super().update_state(batch_update)
        self._totals["update_s"] += time.perf_counter() - start

    def apply(self, logits: Any) -> Any:
        start = time.perf_counter()
        out = super().apply(logits)
        self._totals["apply_s"] += time.perf_counter() - start
        self._totals["steps"] += 1
        self._totals["tagged_steps"] += bool(self._rows.rows)
        if self._path and self._totals["steps"] % 10 == 0:
            self.flush()
        return out

    def flush(self) -> None:
        if self._path:
            temp = f"{self._path}.tmp"
            with open(temp, "w") as handle:
                json.dump(self._totals, handle)
            os.replace(temp, self._path)
