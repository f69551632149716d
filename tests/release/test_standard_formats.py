"""The optimized artifacts in the formats engines load: compressed-tensors and GGUF.

Every artifact is loaded the way a user loads it (``AutoModelForCausalLM.from_pretrained``,
with ``gguf_file=`` for GGUF) and compared with the open tier on held-out text: loading is
never silently wrong.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from licensing.keys import PrivateKey, save_public_key
from release.build import BuildOptions, build_release
from release.compressed import write_compressed_tier
from release.errors import (
    QuantizationError,
    QuantizerUnavailableError,
    UnknownOptimizationError,
    UnsupportedArchitectureError,
    UnsupportedTokenizerError,
)
from release.fidelity import OptimizedTier, build_optimized_tier, held_out_texts
from release.formats import OPTIMIZATIONS, parse_optimizations, tier_names
from release.gguf_export import write_gguf_tier
from release.loader import load_model, tier_format
from release.quantize import QuantizedTier
from release.safetensors_check import INDEX_FILE_NAME
from release.verify import verify_tier
from tests.model_signing_cli import model_signing_verify
from tests.release.conftest import one_thread


def _logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        logits: torch.Tensor = model(input_ids=ids).logits
    return logits.to(torch.float64)


def _held_out_ids(model_dir: Path, count: int = 96) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tokenizer(" ".join(held_out_texts()))["input_ids"][:count]
    return torch.tensor([ids])


def _agreement(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    return float((reference.argmax(-1) == candidate.argmax(-1)).double().mean())


def _plain_from_pretrained(folder: Path, **kw: Any) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
    model.train(False)
    return model


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


# ---------------------------------------------------------------- compressed-tensors


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
    ids = _held_out_ids(tiny_llama)
    reference = _logits(_plain_from_pretrained(tiny_llama), ids)
    loaded = _logits(_plain_from_pretrained(ct_int8.quantized.out_dir), ids)
    assert _agreement(reference, loaded) >= 0.97
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
    ids = _held_out_ids(tiny_llama)
    reference = _logits(_plain_from_pretrained(tiny_llama), ids)
    loaded = _logits(_plain_from_pretrained(tier.out_dir), ids)
    assert _agreement(reference, loaded) >= 0.85
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
    original = _plain_from_pretrained(odd_llama).model.layers[0].mlp
    model = _plain_from_pretrained(tier.out_dir)
    _logits(model, torch.zeros((1, 4), dtype=torch.long))  # decompresses on the first call
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
    ids = _held_out_ids(tiny_llama, 48)
    reference = _logits(_plain_from_pretrained(tiny_llama), ids)
    assert _agreement(reference, _logits(load_model(tmp_path / "t"), ids)) >= 0.95


def test_compressed_tensors_refuses_gpt2_conv1d_naming_artifact_and_engine(
    tiny_gpt2_sharded: Path, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedArchitectureError) as caught:
        write_compressed_tier(tiny_gpt2_sharded, tmp_path / "t", method="int8")
    assert caught.value.code == "unsupported_architecture"
    assert "compressed-tensors" in caught.value.message
    assert "Conv1D" in caught.value.message
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------- GGUF


@pytest.mark.parametrize(
    ("fixture", "quant", "min_agreement"),
    [
        ("tiny_llama", "q8_0", 0.97),
        ("tiny_llama", "q4_0", 0.85),
        ("tiny_gpt2_sharded", "q8_0", 0.97),
    ],
)
def test_gguf_loads_in_transformers_with_its_own_tokenizer(
    fixture: str, quant: str, min_agreement: float, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import gguf
    from transformers import AutoTokenizer

    source: Path = request.getfixturevalue(fixture)
    tier = write_gguf_tier(source, tmp_path / "g", quant_type=quant, show_progress=False)
    assert tier.weight_files == (f"model-{quant}.gguf",)
    path = tmp_path / "g" / tier.weight_files[0]
    reader = gguf.GGUFReader(str(path))
    fields = reader.fields
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "gpt2"
    assert "tokenizer.ggml.merges" in fields
    assert "tokenizer.ggml.tokens" in fields
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["token_embd.weight"] == "F16"  # embeddings kept in higher precision
    assert kinds["blk.0.ffn_down.weight"] == quant.upper()
    text = " ".join(held_out_texts())[:400]
    own = AutoTokenizer.from_pretrained(str(tmp_path / "g"), gguf_file=path.name)
    ids = AutoTokenizer.from_pretrained(str(source))(text, return_tensors="pt")["input_ids"]
    assert own(text)["input_ids"] == ids[0].tolist()
    reference = _logits(_plain_from_pretrained(source), ids[:, :96])
    loaded = _logits(load_model(tmp_path / "g"), ids[:, :96])
    assert _agreement(reference, loaded) >= min_agreement


def test_gguf_embeds_the_chat_template(tiny_llama: Path, tmp_path: Path) -> None:
    import gguf

    source = tmp_path / "src"
    shutil.copytree(tiny_llama, source)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    tier = write_gguf_tier(source, tmp_path / "g", show_progress=False)
    fields = gguf.GGUFReader(str(tmp_path / "g" / tier.weight_files[0])).fields
    template = bytes(fields["tokenizer.chat_template"].parts[-1]).decode()
    assert template == config["chat_template"]


def test_gguf_refuses_an_unsupported_architecture(tiny_llama: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_llama, source)
    config = json.loads((source / "config.json").read_text())
    config["model_type"] = "mistral"
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError, match=r"gguf-q8_0 \(llama.cpp"):
        write_gguf_tier(source, tmp_path / "g")
    assert not (tmp_path / "g").exists()


def _word_level_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))


def _metaspace_bpe(folder: Path) -> None:
    doc = json.loads((folder / "tokenizer.json").read_text())
    doc["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}
    (folder / "tokenizer.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("spoil", [_word_level_tokenizer, _metaspace_bpe])
def test_gguf_refuses_a_tokenizer_it_cannot_express_before_writing(
    spoil: Callable[[Path], None], tiny_llama: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_llama, source)
    spoil(source)
    with pytest.raises(UnsupportedTokenizerError) as caught:
        write_gguf_tier(source, tmp_path / "g")
    assert caught.value.code == "unsupported_tokenizer"
    assert not (tmp_path / "g").exists()


# ---------------------------------------------------------------- names, build, card


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
    ids = _held_out_ids(tiny_llama, 48)
    reference = _logits(_plain_from_pretrained(tiny_llama), ids)
    assert _agreement(reference, _logits(load_model(legacy.out_dir), ids)) >= 0.95


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
    ids = _held_out_ids(tiny_llama, 48)
    reference = _logits(_plain_from_pretrained(tiny_llama), ids)
    assert _agreement(reference, _logits(load_model(tmp_path / "b"), ids)) >= 0.85


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
