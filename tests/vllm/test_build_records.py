"""A release built with a vLLM environment signs vLLM's fidelity and speed records for its
compressed-tensors artifact (int8), measured by vLLM itself at build time.

Shapes and statuses only: the figures are a wall-clock fact of one machine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from licensing.keys import PrivateKey
from licensing.statements import release_from_statement
from release.build import BuildOptions, build_release
from release.engine_records import measurements_by_tier
from tests.vllm.conftest import vllm_python

# Two vLLM loads (open tier, int8), each tens of seconds on a CPU, more on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_an_int8_build_signs_vllm_fidelity_and_speed(tiny_model: Path, tmp_path: Path) -> None:
    python = vllm_python()
    options = BuildOptions(
        repo_id="acme/tiny",
        version="1.0.0",
        optimize=("int8",),
        measure_speed=True,
        speed_tokens=4,
        vllm_python=str(python),
    )
    now = datetime.now(UTC)
    built = build_release(
        tiny_model, tmp_path / "rel", key=PrivateKey.generate(), options=options, now=now,
        show_progress=False,
    )  # fmt: skip
    statement = release_from_statement(built.statement.to_statement())
    records = measurements_by_tier(statement.measurements)["optimized"]
    fidelity = records["vllm_fidelity"]
    assert fidelity["status"] == "measured", fidelity
    assert fidelity["engine_version"]
    assert int(fidelity["positions"]) > 0
    for key in ("vllm_top1_agreement", "vllm_mean_kl", "vllm_perplexity_ratio"):
        assert key in statement.fidelity  # next to the transformers figures
    assert "top1_agreement" in statement.fidelity
    speed = records["speed"]
    assert speed["status"] == "measured", speed
    assert speed["engine"] == "vllm"
    assert speed["engine_version"] == fidelity["engine_version"]
    assert speed["batch_sizes"] == "1,8"
    for batch in (1, 8):
        assert float(speed[f"b{batch}.tokens_per_s"]) > 0
        assert float(speed[f"b{batch}.open_tokens_per_s"]) > 0
    assert speed["measured_on"] == now.date().isoformat()
    card = (tmp_path / "rel" / "optimized" / "README.md").read_text()
    table = card.split("## Speed and engine fidelity", 1)[1].split("\n## ", 1)[0]
    assert f"vllm {speed['engine_version']}" in table
    assert "not measured" not in table
