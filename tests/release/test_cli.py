from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.cli.release import group


def test_release_group_imports_no_torch() -> None:
    code = (
        "import sys, gateway.cli.release; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "import release.safetensors_check, release.manifest, release.model_card, release.loader; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_validate_prints_files_and_counts(tiny_gpt2_sharded: Path) -> None:
    result = CliRunner().invoke(group, ["validate", str(tiny_gpt2_sharded)])
    assert result.exit_code == 0, result.output
    assert "model-00001-of-00003.safetensors:" in result.output
    assert "total: " in result.output
    as_json = CliRunner().invoke(group, ["validate", "--json", str(tiny_gpt2_sharded)])
    doc = json.loads(as_json.stdout)
    assert len(doc["files"]) == 3


def test_validate_reports_typed_error(tiny_llama: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(tiny_llama, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-3])
    result = CliRunner().invoke(cli, ["release", "validate", str(folder)])
    assert result.exit_code != 0
    assert result.exception is not None
    assert getattr(result.exception, "code", None) == "safetensors_invalid"


def test_validate_through_main_prints_one_line(tiny_llama: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(tiny_llama, folder)
    (folder / "config.json").write_text("[]")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "release", "validate", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "error [model_folder_invalid]: config.json: not a JSON object" in proc.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_quantize_writes_tier_and_prints_fidelity(
    tiny_llama: Path, tmp_path: Path, as_json: bool
) -> None:
    out = tmp_path / "opt"
    args = ["quantize", str(tiny_llama), "--out", str(out), "--method", "bf16", "--no-progress"]
    result = CliRunner().invoke(group, [*args, "--json"] if as_json else args)
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").exists()
    if as_json:
        doc = json.loads(result.stdout)
        assert doc["method"] == "bf16"
        assert doc["top1_agreement"] > 0.9
    else:
        assert "top-1 agreement:" in result.output
