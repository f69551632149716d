"""Calibration one decoder block at a time gives the whole-model pass's statistics exactly.

The layer-at-a-time path (``release.calibration_layerwise``) runs for models whose float32
copy and Hessians would not fit the default bound; here it is forced on the tests' tiny
Llama and compared with the whole-model path bit for bit: the Hessians, the smoothing
factors, and the tier written from them.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import torch

import release.calibration_layerwise as layerwise
from release.calibration import calibrate
from release.calibration_layerwise import calibrate_layerwise
from release.compressed import _architecture, write_compressed_tier
from release.errors import CalibrationError


def _modules(model_dir: Path, skip: tuple[str, ...] = ("lm_head",)) -> tuple[str, ...]:
    config = json.loads((model_dir / "config.json").read_text())
    return tuple(_architecture(config, skip).quantize)


@pytest.mark.parametrize("method", ["gptq", "smoothquant+gptq"])
def test_layerwise_statistics_equal_the_whole_model_pass_bit_for_bit(
    method: str, tiny_llama: Path
) -> None:
    modules = _modules(tiny_llama)
    whole = calibrate(tiny_llama, modules, method=method, num_sequences=8)  # type: ignore[arg-type]
    blocks = calibrate_layerwise(tiny_llama, modules, method=method, num_sequences=8)  # type: ignore[arg-type]
    assert blocks.tokens == whole.tokens
    assert blocks.record() == whole.record()
    assert set(blocks.hessians) == set(whole.hessians)
    assert len(whole.hessians) == len(modules)
    for name, hessian in whole.hessians.items():
        assert torch.equal(blocks.hessians[name], hessian), name
    for mine, theirs in (
        (blocks.column_factors, whole.column_factors),
        (blocks.row_divisors, whole.row_divisors),
    ):
        assert set(mine) == set(theirs)
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert blocks.smoothed_modules == whole.smoothed_modules


def test_the_writer_goes_block_by_block_past_the_bound_and_writes_the_same_tier(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = write_compressed_tier(
        tiny_llama, tmp_path / "whole", method="int4", calibration="gptq", show_progress=False
    )
    seen: list[str] = []
    real = layerwise.calibrate_layerwise

    def spy(*args: object, **kwargs: object) -> object:
        seen.append("layerwise")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(layerwise, "LAYERWISE_ABOVE_BYTES", 0)
    monkeypatch.setattr(layerwise, "calibrate_layerwise", spy)
    blocks = write_compressed_tier(
        tiny_llama, tmp_path / "blocks", method="int4", calibration="gptq", show_progress=False
    )
    assert seen == ["layerwise"]
    assert blocks.calibration == whole.calibration
    for name in whole.weight_files:
        assert (tmp_path / "blocks" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_spilled_hessians_are_read_back_one_at_a_time_and_removed_with_the_calibration(
    tiny_llama: Path, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    result = calibrate_layerwise(
        tiny_llama, _modules(tiny_llama), method="gptq", num_sequences=4, spill_dir=spill
    )
    (folder,) = spill.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [f"block-{i}.safetensors" for i in range(4)]
    assert result.hessians.get("no.such.module") is None
    del result
    gc.collect()
    assert list(spill.iterdir()) == []


def test_layers_outside_the_blocks_and_unknown_methods_are_refused(tiny_llama: Path) -> None:
    with pytest.raises(CalibrationError, match="lm_head is outside"):
        calibrate_layerwise(tiny_llama, _modules(tiny_llama, ()), method="gptq", num_sequences=2)
    with pytest.raises(CalibrationError, match="not one of"):
        calibrate_layerwise(tiny_llama, _modules(tiny_llama), method="none")
