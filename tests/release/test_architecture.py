"""Sequence classifiers (guard models) are checked and loaded as classifiers, causal LMs as
causal LMs: the architecture comes from ``config.json``'s ``architectures``."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.architecture import folder_is_sequence_classifier, is_sequence_classifier


def test_the_auto_class_follows_the_declared_architecture() -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from release.architecture import auto_model_class

    assert is_sequence_classifier({"architectures": ["LlamaForSequenceClassification"]})
    assert not is_sequence_classifier({"architectures": ["LlamaForCausalLM"]})
    assert not is_sequence_classifier({})  # no claim: a causal LM, as before
    # A mixed claim is no classifier (every architecture must be one).
    mixed = ["LlamaForSequenceClassification", "LlamaForCausalLM"]
    assert not is_sequence_classifier({"architectures": mixed})
    assert auto_model_class({"architectures": ["LlamaForSequenceClassification"]}) is (
        AutoModelForSequenceClassification
    )
    assert auto_model_class({"architectures": ["LlamaForCausalLM"]}) is AutoModelForCausalLM


def _classifier(root: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from release.testing import build_tiny_model

    base = build_tiny_model(root / "base", hidden_size=32, num_layers=1)
    config = AutoConfig.from_pretrained(str(base))
    config.num_labels = 2
    config.id2label = {0: "safe", 1: "hate"}
    config.label2id = {"safe": 0, "hate": 1}
    config.pad_token_id = 0
    torch.manual_seed(0)
    out = root / "guard"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    return out


def test_a_classifier_folder_passes_the_declared_weights_check_and_loads(tmp_path: Path) -> None:
    from release.declared import check_declared_weights
    from release.loader import load_model
    from release.safetensors_check import validate_model_folder

    folder = _classifier(tmp_path)
    assert folder_is_sequence_classifier(folder)
    declared = check_declared_weights(validate_model_folder(folder))
    assert any("score.weight" in t.names for t in declared.tensors)
    model = load_model(folder)
    assert type(model).__name__ == "LlamaForSequenceClassification"


def test_a_classifier_missing_its_head_is_refused(tmp_path: Path) -> None:
    """The head is declared: a classifier stored without it would get a random one."""
    from safetensors.torch import load_file, save_file

    from release.declared import check_declared_weights
    from release.errors import WeightMissingError
    from release.safetensors_check import validate_model_folder

    folder = _classifier(tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    del weights["score.weight"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightMissingError):
        check_declared_weights(validate_model_folder(folder))
