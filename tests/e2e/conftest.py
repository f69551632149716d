"""Fixtures for whole journeys: a tiny trained model built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Llama with a local tokenizer, briefly trained so its predictions are peaked."""
    from release.testing import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(path, train_steps=30)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from tests.e2e.browser import ARGS, ARTIFACTS, CHROMIUM, missing_browser

    # Session scope and first in the test's arguments: a missing browser skips before the
    # model is built.
    if not CHROMIUM.exists():
        missing_browser(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_browser("playwright is not installed (pip install playwright)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()
