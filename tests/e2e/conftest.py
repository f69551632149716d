"""Fixtures for whole journeys: a tiny trained model built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Llama with a local tokenizer, briefly trained so its predictions are peaked."""
    from release.testing import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(path, train_steps=30)
    return path
