from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from release.safetensors_check import validate_model_folder
from release.testing import TINY_CORPUS, build_tiny_model, build_tiny_tokenizer


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    small = {"hidden_size": 64, "num_layers": 1, "vocab_size": 512}
    a = build_tiny_model(tmp_path / "a", seed=3, **small)
    b = build_tiny_model(tmp_path / "b", seed=3, **small)
    c = build_tiny_model(tmp_path / "c", seed=4, **small)
    assert _digest(a / "model.safetensors") == _digest(b / "model.safetensors")
    assert _digest(a / "model.safetensors") != _digest(c / "model.safetensors")
    config = json.loads((a / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["vocab_size"] == 512
    assert validate_model_folder(a).has_tokenizer


def test_tokenizer_round_trips_the_corpus() -> None:
    tokenizer = build_tiny_tokenizer(vocab_size=512)
    ids = tokenizer(TINY_CORPUS[:200])["input_ids"]
    assert max(ids) < 512
    assert tokenizer.decode(ids) == TINY_CORPUS[:200]


def test_unknown_arch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny architecture"):
        build_tiny_model(tmp_path, arch="bert")  # type: ignore[arg-type]
