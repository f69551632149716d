from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from release.fidelity import FidelityReport, measure_fidelity
from release.quantize import quantize_model_folder


def test_fidelity_without_tokenizer_uses_fixed_ids(tiny_llama: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no_tok"
    shutil.copytree(tiny_llama, folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    tier = quantize_model_folder(folder, tmp_path / "bf16", method="bf16", show_progress=False)
    first = measure_fidelity(folder, tier.out_dir, method="bf16", seq_len=16, num_sequences=2)
    second = measure_fidelity(folder, tier.out_dir, method="bf16", seq_len=16, num_sequences=2)
    assert first.probe_positions == 32
    assert first == second
    assert first.tensor_errors == ()
    assert first.max_tensor_error == 0.0


def test_identical_tiers_agree_fully(tiny_llama: Path) -> None:
    report = measure_fidelity(tiny_llama, tiny_llama, method="none", seq_len=8, num_sequences=2)
    assert report.top1_agreement == 1.0
    assert report.mean_kl == pytest.approx(0.0, abs=1e-12)
    assert report.size_ratio == 1.0


def test_report_is_frozen_and_rounds_for_statements() -> None:
    report = FidelityReport(
        method="int8",
        open_weights_bytes=3,
        optimized_weights_bytes=1,
        size_ratio=1 / 3,
        probe_positions=4,
        top1_agreement=0.75,
        mean_kl=1.23456789e-5,
        max_tensor_error=0.1,
        mean_tensor_error=0.05,
        tensor_errors=(("w", 0.1),),
    )
    with pytest.raises(AttributeError):
        report.method = "int4"  # type: ignore[misc]
    data = report.to_dict()
    assert data["size_ratio"] == 0.333333
    assert data["mean_kl"] == 1.23457e-05
    assert "tensor_errors" not in data
    assert report.to_dict(include_tensor_errors=True)["tensor_errors"] == {"w": 0.1}
    assert report.meets(max_size_ratio=0.5, min_top1_agreement=0.7)
    assert not report.meets(max_size_ratio=0.3, min_top1_agreement=0.7)
