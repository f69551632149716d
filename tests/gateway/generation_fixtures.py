"""One tiny published-ready release for the generation and detection tests, built once.

A trained tiny Llama (peaked predictions, so its text re-tokenizes like real text) with a
chat template, released in two tiers (open; optimized int8, gated) and signed. Building is
cached per process, so every test module that imports these fixtures shares one build.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.gateway.download_fixtures import BuiltRelease, publish, sign_release

REPO_ID = "acme/chatty"
VERSION = "1.0.0"
MODEL = f"{REPO_ID}@{VERSION}"
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@functools.cache
def build_generation_model() -> Path:
    """The model folder alone (for tests that sign releases of it with options of their own)."""
    from transformers import AutoTokenizer

    from release.testing import build_tiny_model

    root = Path(tempfile.mkdtemp(prefix="tiergate-generation-"))
    model = build_tiny_model(root / "model", train_steps=30)
    # 512 positions (RoPE: the limit is a config field), so 200-token completions fit the
    # context the gateway now enforces.
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 512
    (model / "config.json").write_text(json.dumps(config))
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(model))
    return model


@functools.cache
def build_generation_release() -> BuiltRelease:
    model = build_generation_model()
    return sign_release(model, model.parent / "out", REPO_ID, VERSION)


@functools.cache
def build_generation_version(version: str) -> BuiltRelease:
    """Another version of the same model (same weights, its own signing key)."""
    first = build_generation_release()
    root = Path(tempfile.mkdtemp(prefix="tiergate-generation-"))
    return sign_release(first.out_dir.parent / "model", root / "out", REPO_ID, version)


@pytest.fixture(scope="session")
def generation_release() -> BuiltRelease:
    return build_generation_release()


def model_dir(built: BuiltRelease, tier: str = "open") -> Path:
    return built.out_dir / tier


@pytest.fixture
def published(
    generation_release: BuiltRelease,
    client: TestClient,
    make_account: Callable[..., Account],
) -> Account:
    """The generation test release published by `pat`, a publisher of `acme`."""
    publisher = make_account("pat", "publisher", org="acme")
    publish(generation_release, client, publisher)  # type: ignore[arg-type]
    return publisher
