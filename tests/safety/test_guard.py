"""The guard slot: a tiny sequence-classification model built here (no hub), loaded locally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safety import CheckUnavailableError, ScanContext

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safety.checks.guard import GuardModelCheck  # noqa: E402

WORDS = ["the", "a", "you", "are", "nice", "kind", "hate", "kill", "them", "all", "people"]


def build_guard(folder: Path, labels: dict[int, str], *, multi_label: bool = False) -> Path:
    """A 2-layer BERT classifier with random weights and a word-level vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab), model_max_length=64)
    config = transformers.BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        problem_type="multi_label_classification" if multi_label else None,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_guard_reports_each_hazard_label(tmp_path: Path) -> None:
    folder = build_guard(tmp_path / "guard", {0: "safe", 1: "hate", 2: "violent_crimes"})
    guard = GuardModelCheck.from_dir(folder)
    assert guard.name == "guard"
    assert guard.categories == {"hate", "violent_crimes"}
    findings = guard.scan("you are kind", ScanContext())
    assert [f.category for f in findings] == ["hate", "violent_crimes"]
    assert all(0.0 <= f.score <= 1.0 and f.span is None for f in findings)
    # Softmax over all labels: the two hazards and "safe" share the mass.
    assert sum(f.score for f in findings) < 1.0


def test_multi_label_guard_uses_sigmoids(tmp_path: Path) -> None:
    folder = build_guard(tmp_path / "g", {0: "hate", 1: "profanity"}, multi_label=True)
    guard = GuardModelCheck.from_dir(folder)
    scores = guard.scores("kill them all " * 100)  # longer than the model: truncated
    assert set(scores) == {"hate", "profanity"}
    assert all(0.0 < s < 1.0 for s in scores.values())


def test_a_label_that_is_no_category_refuses_the_model(tmp_path: Path) -> None:
    folder = build_guard(tmp_path / "g", {0: "safe", 1: "LABEL_1"})
    with pytest.raises(CheckUnavailableError, match="LABEL_1"):
        GuardModelCheck.from_dir(folder)


def test_a_guard_without_hazard_labels_is_refused(tmp_path: Path) -> None:
    folder = build_guard(tmp_path / "g", {0: "safe", 1: "benign"})
    with pytest.raises(CheckUnavailableError, match="no hazard"):
        GuardModelCheck.from_dir(folder)


def test_a_folder_that_is_no_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckUnavailableError):
        GuardModelCheck.from_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckUnavailableError):
        GuardModelCheck.from_dir(tmp_path)
