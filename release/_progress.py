"""Progress reporting shared by hashing and quantizing: a tqdm bar and/or a callback."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Progress", "ProgressCallback"]

# Called with (done, total) in the unit of the operation (bytes for hashing, tensors for
# quantizing). It may be called from worker threads, but never concurrently.
ProgressCallback = Callable[[int, int], None]


class Progress:
    """A thread-safe progress counter driving an optional tqdm bar and an optional callback.

    ``show_bar``: ``True`` / ``False`` forces the bar; ``None`` shows it only when stderr is a
    terminal, so logs and CI output stay clean.
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str,
        show_bar: bool | None = None,
        callback: ProgressCallback | None = None,
    ) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._lock = threading.Lock()
        self._bar: Any = None
        if show_bar is None:
            show_bar = sys.stderr.isatty()
        if show_bar:
            from tqdm import tqdm

            scale = unit == "B"
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024, leave=False
            )

    def advance(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            if self._bar is not None:
                self._bar.update(amount)
            if self._callback is not None:
                self._callback(self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
