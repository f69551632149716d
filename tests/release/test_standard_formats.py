"""The compressed-tensors artifacts (int8 W8A8, int4 W4A16), as llm-compressor writes them.

Every artifact is loaded the way a user loads it (``AutoModelForCausalLM.from_pretrained``)
and compared with the open tier on held-out text: loading is never silently wrong. GGUF is in
``test_gguf_format.py``; names, builds and the CLI in ``test_optimize_release.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from release.compressed import write_compressed_tier
from release.errors import (
    QuantizationError,
    UnsupportedArchitectureError,
)
from release.fidelity import OptimizedTier, build_optimized_tier
from release.loader import load_model, tier_format
from release.quantize import QuantizedTier
from release.safetensors_check import INDEX_FILE_NAME
from tests.release.conftest import one_thread
from tests.release.format_checks import (
    held_out_ids,
    logits_of,
    plain_from_pretrained,
    top1_agreement,
)


@pytest.fixture(scope="module")
def ct_int8(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> OptimizedTier:
    with one_thread():
        out = tmp_path_factory.mktemp("ct-int8") / "tier"
        return build_optimized_tier(tiny_llama, out, method="int8", show_progress=False)


@pytest.fixture(scope="module")
def ct_int4(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> OptimizedTier:
    with one_thread():
        out = tmp_path_factory.mktemp("ct-int4") / "tier"
        return build_optimized_tier(tiny_llama, out, method="int4", show_progress=False)


def test_int8_is_w8a8_as_llm_compressor_writes_it(ct_int8: OptimizedTier) -> None:
    from safetensors import safe_open

    tier = ct_int8.quantized
    qc = json.loads((tier.out_dir / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors"
    assert qc["format"] == "int-quantized"
    assert qc["quantization_status"] == "compressed"
    assert qc["ignore"] == ["lm_head"]
    group = qc["config_groups"]["group_0"]
    assert group["targets"] == ["Linear"]
    assert (group["weights"]["num_bits"], group["weights"]["strategy"]) == (8, "channel")
    assert group["weights"]["symmetric"] is True
    assert group["weights"]["dynamic"] is False
    acts = group["input_activations"]
    assert (acts["num_bits"], acts["strategy"], acts["dynamic"]) == (8, "token", True)
    with safe_open(str(tier.out_dir / "model.safetensors"), "pt") as f:
        weight = f.get_tensor("model.layers.0.self_attn.q_proj.weight")
        scale = f.get_tensor("model.layers.0.self_attn.q_proj.weight_scale")
        assert "model.layers.0.self_attn.q_proj.weight_zero_point" not in set(f.keys())
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    assert weight.dtype == torch.int8
    assert scale.shape == (weight.shape[0], 1)
    assert set(dict(tier.modules).values()) == {"int8"}
    assert tier_format(tier.out_dir) == "compressed-tensors"


def test_int8_loads_in_transformers_and_meets_targets(
    ct_int8: OptimizedTier, tiny_llama: Path
) -> None:
    ids = held_out_ids(tiny_llama)
    reference = logits_of(plain_from_pretrained(tiny_llama), ids)
    loaded = logits_of(plain_from_pretrained(ct_int8.quantized.out_dir), ids)
    assert top1_agreement(reference, loaded) >= 0.97
    fid = ct_int8.fidelity
    assert fid.size_ratio <= 0.30
    assert fid.top1_agreement >= 0.97
    assert fid.perplexity_ratio == pytest.approx(1.0, abs=0.01)
    assert fid.engine == "transformers"
    assert "python-stdlib" in fid.text


def test_int4_is_w4a16_pack_quantized(ct_int4: OptimizedTier, tiny_llama: Path) -> None:
    from safetensors import safe_open

    tier = ct_int4.quantized
    qc = json.loads((tier.out_dir / "config.json").read_text())["quantization_config"]
    assert qc["format"] == "pack-quantized"
    weights = qc["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["strategy"], weights["group_size"]) == (4, "group", 128)
    assert qc["config_groups"]["group_0"]["input_activations"] is None
    assert set(qc["config_groups"]) == {"group_0"}  # every layer divides by 128
    with safe_open(str(tier.out_dir / "model.safetensors"), "pt") as f:
        packed = f.get_tensor("model.layers.0.mlp.down_proj.weight_packed")
        scale = f.get_tensor("model.layers.0.mlp.down_proj.weight_scale")
        shape = f.get_tensor("model.layers.0.mlp.down_proj.weight_shape")
    out_features, in_features = shape.tolist()
    assert packed.dtype == torch.int32
    assert packed.shape == (out_features, in_features // 8)
    assert scale.shape == (out_features, in_features // 128)
    ids = held_out_ids(tiny_llama)
    reference = logits_of(plain_from_pretrained(tiny_llama), ids)
    loaded = logits_of(plain_from_pretrained(tier.out_dir), ids)
    assert top1_agreement(reference, loaded) >= 0.85
    assert ct_int4.fidelity.size_ratio <= 0.19
    assert ct_int4.fidelity.perplexity_ratio <= 1.05


@pytest.fixture(scope="module")
def odd_llama(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    """A Llama whose MLP width (320) is not a multiple of 128, so down_proj cannot group."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("odd") / "model"
    config = LlamaConfig(
        vocab_size=1024,
        hidden_size=128,
        intermediate_size=320,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    with one_thread():
        torch.manual_seed(3)
        LlamaForCausalLM(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tiny_llama / name, folder / name)
    return folder


def test_group_size_not_dividing_falls_back_per_module(odd_llama: Path, tmp_path: Path) -> None:
    tier = write_compressed_tier(odd_llama, tmp_path / "t", method="int4", show_progress=False)
    modules = dict(tier.modules)
    assert modules["model.layers.0.mlp.down_proj"] == "int8"  # 320 % 128 != 0
    assert modules["model.layers.0.mlp.up_proj"] == "int4"
    groups = tier.quantization_config["config_groups"]
    fallback, main = groups["group_0"], groups["group_1"]
    assert sorted(fallback["targets"]) == [
        "model.layers.0.mlp.down_proj",
        "model.layers.1.mlp.down_proj",
    ]
    assert (fallback["weights"]["num_bits"], fallback["weights"]["strategy"]) == (8, "channel")
    assert (main["targets"], main["weights"]["num_bits"]) == (["Linear"], 4)
    # transformers picks the by-name group for down_proj and decodes each layer with its own
    # scheme: 8-bit error for the fallback, 4-bit error for the others.
    original = plain_from_pretrained(odd_llama).model.layers[0].mlp
    model = plain_from_pretrained(tier.out_dir)
    logits_of(model, torch.zeros((1, 4), dtype=torch.long))  # decompresses on the first call
    loaded = model.model.layers[0].mlp

    def error(name: str) -> float:
        reference = getattr(original, name).weight.detach()
        approx = getattr(loaded, name).weight.detach().float()
        return float((reference - approx).norm() / reference.norm())

    assert error("down_proj") < 0.01
    assert 0.03 < error("up_proj") < 0.2


def test_group_sizes_outside_the_kernels_are_refused(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="group size 48"):
        write_compressed_tier(tiny_llama, tmp_path / "t", method="int4", group_size=48)
    assert not (tmp_path / "t").exists()


def test_sharded_compressed_tier_loads_in_transformers(tiny_llama: Path, tmp_path: Path) -> None:
    tier = write_compressed_tier(
        tiny_llama, tmp_path / "t", method="int8", max_shard_size="300KB", show_progress=False
    )
    assert len(tier.weight_files) > 1
    assert (tmp_path / "t" / INDEX_FILE_NAME).is_file()
    weight_map = json.loads((tmp_path / "t" / INDEX_FILE_NAME).read_text())["weight_map"]
    module = "model.layers.1.self_attn.o_proj"
    assert weight_map[f"{module}.weight"] == weight_map[f"{module}.weight_scale"]
    ids = held_out_ids(tiny_llama, 48)
    reference = logits_of(plain_from_pretrained(tiny_llama), ids)
    assert top1_agreement(reference, logits_of(load_model(tmp_path / "t"), ids)) >= 0.95


def test_compressed_tensors_refuses_gpt2_conv1d_naming_artifact_and_engine(
    tiny_gpt2_sharded: Path, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedArchitectureError) as caught:
        write_compressed_tier(tiny_gpt2_sharded, tmp_path / "t", method="int8")
    assert caught.value.code == "unsupported_architecture"
    assert "compressed-tensors" in caught.value.message
    assert "Conv1D" in caught.value.message
    assert not (tmp_path / "t").exists()


def test_mse_observer_lowers_int4_weight_error_and_is_recorded(
    tiny_llama: Path, tmp_path: Path
) -> None:
    minmax = write_compressed_tier(tiny_llama, tmp_path / "a", method="int4", show_progress=False)
    mse = write_compressed_tier(
        tiny_llama, tmp_path / "b", method="int4", weight_observer="mse", show_progress=False
    )
    quantized = dict(minmax.modules)

    def mean_error(tier: QuantizedTier) -> float:
        errors = [e for n, e in tier.tensor_errors if n.removesuffix(".weight") in quantized]
        return sum(errors) / len(errors)

    assert mean_error(mse) < mean_error(minmax)
    assert mse.quantization_config["config_groups"]["group_0"]["weights"]["observer"] == "mse"
    assert "observer" not in minmax.quantization_config["config_groups"]["group_0"]["weights"]
    ids = held_out_ids(tiny_llama, 48)
    reference = logits_of(plain_from_pretrained(tiny_llama), ids)
    assert top1_agreement(reference, logits_of(load_model(tmp_path / "b"), ids)) >= 0.85


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_row_blocks_compress_exactly_like_one_call(
    method: str, tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounded working set (rows compressed in blocks) changes no byte of the tier."""
    import release.compressed as compressed

    whole = write_compressed_tier(tiny_llama, tmp_path / "a", method=method, show_progress=False)
    monkeypatch.setattr(compressed, "_BLOCK_ELEMENTS", 1000)  # a few rows per block
    blocked = write_compressed_tier(tiny_llama, tmp_path / "b", method=method, show_progress=False)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()
    assert dict(whole.tensor_errors) == pytest.approx(dict(blocked.tensor_errors), rel=1e-9)
