"""Which transformers auto class builds a model folder: causal LMs, and the sequence
classifiers that guard models are (issue 19), chosen from ``config.json``'s
``architectures``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CLASSIFIER_SUFFIX",
    "auto_model_class",
    "folder_is_sequence_classifier",
    "is_sequence_classifier",
]

CLASSIFIER_SUFFIX = "ForSequenceClassification"
"""The suffix of a transformers sequence-classification architecture (``LlamaFor...``)."""


def is_sequence_classifier(config: Mapping[str, Any] | Any) -> bool:
    """Whether a config (a ``config.json`` mapping or a transformers config) declares a
    sequence classifier rather than a causal LM."""
    raw = config.get("architectures") if isinstance(config, Mapping) else None
    if raw is None and not isinstance(config, Mapping):
        raw = getattr(config, "architectures", None)
    if not isinstance(raw, list | tuple) or not raw:
        return False
    return all(isinstance(a, str) and a.endswith(CLASSIFIER_SUFFIX) for a in raw)


def auto_model_class(config: Mapping[str, Any] | Any) -> Any:
    """``AutoModelForSequenceClassification`` for a classifier, else ``AutoModelForCausalLM``."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if is_sequence_classifier(config):
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def folder_is_sequence_classifier(folder: Path) -> bool:
    """Whether a validated model folder's ``config.json`` declares a sequence classifier."""
    from release.safetensors_check import MAX_JSON_FILE_BYTES

    path = folder / "config.json"
    try:
        if path.stat().st_size > MAX_JSON_FILE_BYTES:
            return False
        config = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and is_sequence_classifier(config)
