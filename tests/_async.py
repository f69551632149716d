"""Running a coroutine to completion from a plain (synchronous) test.

``asyncio.run`` refuses to start while a loop runs in the calling thread, and one does for the
rest of a session once a browser test has run: Playwright's sync API keeps its event loop
running in the main thread (the session-scoped browser fixture). A fresh thread has no loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run_async"]


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` in a thread of its own; exceptions propagate."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
