"""The guard check over a tiny sequence classifier (what a guard release's verified folder
holds): labels named after hazard categories become findings, others are ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from safety.errors import CheckUnavailableError
from safety.findings import ScanContext


def _classifier(root: Path, labels: list[str], multi: bool = False) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from release.testing import build_tiny_model

    base = build_tiny_model(root / "base", hidden_size=32, num_layers=1)
    config = AutoConfig.from_pretrained(str(base))
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.pad_token_id = 0
    if multi:
        config.problem_type = "multi_label_classification"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    out = root / "guard"
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    return out


@pytest.mark.parametrize("multi", [False, True])
def test_a_guard_scores_its_hazard_labels(tmp_path: Path, multi: bool) -> None:
    from gateway.services.safety_guard import GuardCheck

    guard = GuardCheck(_classifier(tmp_path, ["safe", "hate", "violent_crimes"], multi))
    assert guard.categories == frozenset({"hate", "violent_crimes"})
    findings = guard.scan("some text to judge", ScanContext(language="en"))
    assert sorted(f.category for f in findings) == ["hate", "violent_crimes"]
    assert all(0.0 <= f.score <= 1.0 and f.span is None for f in findings)
    assert all(f.check == "guard" and f.language == "en" for f in findings)


def test_a_classifier_without_hazard_labels_is_no_guard(tmp_path: Path) -> None:
    from gateway.services.safety_guard import GuardCheck

    with pytest.raises(CheckUnavailableError, match="no hazard category"):
        GuardCheck(_classifier(tmp_path, ["positive", "negative"]))


def test_a_folder_without_a_model_is_no_guard(tmp_path: Path) -> None:
    from gateway.services.safety_guard import GuardCheck

    with pytest.raises(CheckUnavailableError):
        GuardCheck(tmp_path)
