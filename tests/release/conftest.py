"""Shared fixtures: tiny models built once per session, small hand-made safetensors files."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from release.testing import build_tiny_model

# Enough to make next-token distributions peaked (see release/testing.py).
TRAIN_STEPS = 25


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread: the tiny models' ops are too small to gain from more,
    and on a shared CI machine spinning OpenMP workers make them several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny Llama, one safetensors file. Treat as read-only."""
    with one_thread():
        return build_tiny_model(
            tmp_path_factory.mktemp("llama") / "model", arch="llama", train_steps=TRAIN_STEPS
        )


@pytest.fixture(scope="session")
def tiny_gpt2_sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny GPT-2 (Conv1D layers) in 3 shards with an index. Treat as read-only."""
    with one_thread():
        return build_tiny_model(
            tmp_path_factory.mktemp("gpt2") / "model",
            arch="gpt2",
            shards=3,
            seed=1,
            train_steps=TRAIN_STEPS,
        )


def make_safetensors(
    tensors: dict[str, Any],
    data: bytes,
    *,
    metadata: dict[str, Any] | None = None,
    pad_to: int = 8,
) -> bytes:
    """Raw safetensors bytes from a header dict (written as given) and a data section."""
    header: dict[str, Any] = dict(tensors)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % pad_to)
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[bytes, str], Path]:
    def write(content: bytes, name: str = "model.safetensors") -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return write
