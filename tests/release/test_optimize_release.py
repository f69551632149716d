"""Around the artifact formats: optimization names, refusals before writing, a release with
two artifacts (signed, listed, documented), the CLI, and loading legacy or ambiguous tiers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from licensing.keys import PrivateKey, save_public_key
from release.build import BuildOptions, build_release
from release.errors import (
    QuantizerUnavailableError,
    UnknownOptimizationError,
    UnsupportedArchitectureError,
)
from release.fidelity import build_optimized_tier
from release.formats import OPTIMIZATIONS, parse_optimizations, tier_names
from release.gguf_export import write_gguf_tier
from release.loader import load_model, tier_format
from release.quantize import QuantizedTier
from release.verify import verify_tier
from tests.model_signing_cli import model_signing_verify
from tests.release.format_checks import (
    held_out_ids,
    logits_of,
    plain_from_pretrained,
    top1_agreement,
)


def test_optimization_names_and_tier_names() -> None:
    from gateway.cli.release_publish import OPTIMIZE_NAMES

    assert tuple(OPTIMIZATIONS) == OPTIMIZE_NAMES
    chosen = parse_optimizations(["int8", "gguf-q4_0", "int4"])
    assert tier_names(chosen) == ("optimized", "optimized_gguf_q4_0", "optimized_int4")
    with pytest.raises(UnknownOptimizationError, match=r"q4_k_m.*llama\.cpp") as caught:
        parse_optimizations("gguf-q3_k_s")
    assert caught.value.code == "unknown_optimization"
    with pytest.raises(UnknownOptimizationError, match="twice"):
        parse_optimizations(["int8", "int8"])
    with pytest.raises(UnknownOptimizationError, match="unknown optimization 'int3'"):
        parse_optimizations("int3")


def test_unknown_optimize_value_is_refused_by_the_cli(tiny_llama: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gateway.cli.release import group

    key = tmp_path / "k.pem"
    key.write_text("unused")
    args = ["build", str(tiny_llama), "--out", str(tmp_path / "r"), "--repo", "acme/t"]
    args += ["--version", "1.0.0", "--key", str(key), "--optimize", "gguf-q3_k_s"]
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 2
    assert "gguf-q3_k_s" in result.output
    assert "gguf-q4_k_m" in result.output
    assert "gguf-q4_0" in result.output
    assert not (tmp_path / "r").exists()


def test_build_refuses_an_artifact_before_writing_anything(
    tiny_gpt2_sharded: Path, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedArchitectureError):
        build_release(
            tiny_gpt2_sharded,
            tmp_path / "r",
            key=PrivateKey.generate(),
            options=BuildOptions(repo_id="acme/g", version="1.0.0", optimize=("gguf-q8_0", "int8")),
            now=datetime(2026, 1, 1, tzinfo=UTC),
            show_progress=False,
        )
    assert not (tmp_path / "r").exists()


def test_kquant_without_llamacpp_is_refused_naming_the_install_before_writing(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # the import fails, as uninstalled
    with pytest.raises(QuantizerUnavailableError, match=r"make llamacpp") as caught:
        build_release(
            tiny_llama,
            tmp_path / "r",
            key=PrivateKey.generate(),
            options=BuildOptions(
                repo_id="acme/t", version="1.0.0", optimize=("int8", "gguf-q4_k_m")
            ),
            now=datetime(2026, 1, 1, tzinfo=UTC),
            show_progress=False,
        )
    assert caught.value.code == "quantizer_unavailable"
    assert "tiergate[llamacpp]" in str(caught.value)
    assert "gguf-q4_k_m" in str(caught.value)
    assert not (tmp_path / "r").exists()
    # The writer itself refuses before its f16 staging file too.
    with pytest.raises(QuantizerUnavailableError):
        write_gguf_tier(tiny_llama, tmp_path / "g", quant_type="q6_k")
    assert list(tmp_path.iterdir()) == []


def test_kquant_without_llamacpp_is_refused_by_the_cli_with_its_code(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from click.testing import CliRunner

    from gateway.cli.release import group

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    out = tmp_path / "q"
    result = CliRunner().invoke(
        group, ["quantize", str(tiny_llama), "--out", str(out), "--method", "gguf-q4_k_m"]
    )
    # The typed error reaches the CLI's one handler in main(), which prints its code.
    assert isinstance(result.exception, QuantizerUnavailableError)
    assert not out.exists()


def test_release_with_two_artifacts_signs_lists_and_documents_each(
    tiny_llama: Path, tmp_path: Path
) -> None:
    key = PrivateKey.generate()
    pub = save_public_key(key.public_key, tmp_path / "pub.pem")
    built = build_release(
        tiny_llama,
        tmp_path / "release",
        key=key,
        options=BuildOptions(repo_id="acme/tiny", version="1.0.0", optimize=("int8", "gguf-q4_0")),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    names = ("open", "optimized", "optimized_gguf_q4_0")
    assert tuple(built.tiers) == names
    assert {t.name: t.gated for t in built.statement.tiers} == {
        "open": False,
        "optimized": True,
        "optimized_gguf_q4_0": True,
    }
    root = tmp_path / "release"
    for name in names:
        assert verify_tier(root / name, key.public_key).files == len(built.tiers[name].files)
        checked = model_signing_verify(root / name, pub)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tier_format(root / "optimized") == "compressed-tensors"
    assert tier_format(root / "optimized_gguf_q4_0") == "gguf"
    opt, fid = built.statement.optimization, built.statement.fidelity
    assert opt["method"] == "int8"
    assert opt["format"] == "compressed-tensors"
    assert opt["optimized_gguf_q4_0.method"] == "gguf-q4_0"
    assert opt["optimized_gguf_q4_0.format"] == "gguf"
    assert float(fid["optimized_gguf_q4_0.perplexity_ratio"]) > 0
    assert float(fid["top1_agreement"]) >= 0.97
    card = (root / "open" / "README.md").read_text()
    assert "tiergate pull acme/tiny@1.0.0 --tier optimized --out" in card
    assert "tiergate pull acme/tiny@1.0.0 --tier optimized_gguf_q4_0 --out" in card
    assert "--revision" not in card
    assert "vllm serve ./tiny-optimized --dtype bfloat16" in card
    assert "llama-cli -m ./tiny-optimized_gguf_q4_0/model-q4_0.gguf" in card
    assert "FROM ./tiny-optimized_gguf_q4_0/model-q4_0.gguf" in card
    assert 'revision="1.0.0-optimized"' in card
    assert "Held-out perplexity" in card


def test_legacy_tiergate_tiers_keep_loading(tiny_llama: Path, tmp_path: Path) -> None:
    legacy: QuantizedTier = build_optimized_tier(
        tiny_llama, tmp_path / "old", method="int8", tier_format="tiergate", show_progress=False
    ).quantized
    assert tier_format(legacy.out_dir) == "tiergate"
    ids = held_out_ids(tiny_llama, 48)
    reference = logits_of(plain_from_pretrained(tiny_llama), ids)
    assert top1_agreement(reference, logits_of(load_model(legacy.out_dir), ids)) >= 0.95


def test_cli_quantize_writes_a_gguf_artifact_and_prints_its_perplexity(
    tiny_llama: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from gateway.cli.release import group

    out = tmp_path / "g"
    args = ["quantize", str(tiny_llama), "--out", str(out), "--method", "gguf-q8_0"]
    result = CliRunner().invoke(group, [*args, "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["method"] == "gguf-q8_0"
    assert doc["weight_files"] == ["model-q8_0.gguf"]
    assert doc["top1_agreement"] >= 0.97
    assert doc["perplexity_ratio"] == pytest.approx(1.0, abs=0.01)


def test_ambiguous_or_unknown_tiers_are_refused_not_guessed(tmp_path: Path) -> None:
    from release.errors import OptimizedTierInvalidError

    both = tmp_path / "both"
    both.mkdir()
    (both / "model-q8_0.gguf").write_bytes(b"GGUF")
    (both / "model.safetensors").write_bytes(b"")
    with pytest.raises(OptimizedTierInvalidError, match=r"exactly one \.gguf"):
        load_model(both)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq"}}))
    with pytest.raises(OptimizedTierInvalidError, match="unknown quant_method 'awq'"):
        load_model(other)
