"""Declared-vs-stored tensors: config.json must not promise weights the files do not hold."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from release.declared import check_declared_weights, declared_model
from release.errors import (
    ConfigTooLargeError,
    DeclaredWeightsError,
    OptimizedTierInvalidError,
    WeightMissingError,
    WeightShapeError,
    WeightUnexpectedError,
)
from release.safetensors_check import validate_model_folder
from tests.release.declared_fixtures import (
    HUGE_LLAMA,
    folder_bytes,
    write_tiny_release_declaring_huge_model,
)


def check(folder: Path) -> Any:
    return check_declared_weights(validate_model_folder(folder))


def copy_with(
    source: Path, target: Path, edit: Any = None, config: dict[str, Any] | None = None
) -> Path:
    shutil.copytree(source, target)
    if edit is not None:
        tensors = load_file(str(target / "model.safetensors"))
        edit(tensors)
        save_file(tensors, str(target / "model.safetensors"))
    if config is not None:
        current = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**current, **config}))
    return target


def test_released_tiny_models_store_every_declared_tensor(
    tiny_llama: Path, tiny_gpt2_sharded: Path
) -> None:
    llama = check(tiny_llama)
    # Tied: lm_head.weight is the embedding, stored once under the embedding's name.
    (embedding,) = [t for t in llama.tensors if "lm_head.weight" in t.names]
    assert embedding.names == ("model.embed_tokens.weight", "lm_head.weight")
    assert check(tiny_gpt2_sharded).model_type == "gpt2"


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_optimized_tiers_store_every_declared_tensor(
    tiny_llama: Path, tmp_path: Path, method: str
) -> None:
    from release.loader import load_optimized_model
    from release.quantize import quantize_model_folder

    out = tmp_path / method
    quantize_model_folder(tiny_llama, out, method=method, group_size=32, show_progress=False)  # type: ignore[arg-type]
    declared = check(out)
    assert any(t.dtype in ("int8", "uint8") for t in declared.tensors)
    actual = sum(
        t.numel() * t.element_size()
        for t in [*load_optimized_model(out).parameters(), *load_optimized_model(out).buffers()]
    )
    # The budget estimate never undercounts (int4 float16 scales are counted at 4 bytes).
    assert actual <= declared.load_bytes() <= actual * 1.1


def test_declared_bytes_are_what_loading_takes(tiny_llama: Path) -> None:
    from release.loader import load_model

    model = load_model(tiny_llama)
    actual = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert check(tiny_llama).load_bytes() == actual


@pytest.mark.parametrize(
    ("per_layer", "code", "reason"),
    [
        (False, "config_too_large", "num_hidden_layers = 4 exceeds"),
        (True, "weight_missing", "declares 336,611,328 parameter values"),
    ],
)
def test_13kb_release_declaring_gigabytes_is_refused_at_build(
    tmp_path: Path, per_layer: bool, code: str, reason: str
) -> None:
    """Issue #14.3: a 13 KB release declared 1.35 GB of parameters, which loaders filled
    with random values (the gateway grew by 1.5 GB). The build (publish) refuses it before
    writing anything."""
    from licensing.keys import PrivateKey
    from release.build import BuildOptions, build_release

    attack = write_tiny_release_declaring_huge_model(
        tmp_path / "attack", one_tensor_per_layer=per_layer
    )
    assert folder_bytes(attack) < 32_000
    with pytest.raises(DeclaredWeightsError) as raised:
        build_release(
            attack,
            tmp_path / "out",
            key=PrivateKey.generate(),
            options=BuildOptions(repo_id="evil/tiny", version="1.0.0"),
            now=datetime(2026, 1, 1, tzinfo=UTC),
            show_progress=False,
        )
    assert reason in raised.value.message
    assert raised.value.code == code
    assert not (tmp_path / "out").exists()


def test_13kb_release_is_refused_at_load_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same files reaching ``load_model`` without the build (written by hand): refused
    from the headers, before transformers allocates (and randomly fills) the weights."""
    from transformers import AutoModelForCausalLM

    from release.loader import load_model

    def allocate(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the loader allocated the declared model")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", allocate)
    attack = write_tiny_release_declaring_huge_model(tmp_path / "attack", one_tensor_per_layer=True)
    with pytest.raises(WeightMissingError, match="declares 336,611,328"):
        load_model(attack)


def test_13kb_optimized_tier_is_refused_before_building_quantized_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The optimized loader builds QuantizedLinear modules whose codes are real buffers of
    the declared sizes; the declared check runs before any of them exists."""
    import release._qlinear
    from release.loader import load_model
    from release.quantize import FORMAT_VERSION, QUANT_METHOD_NAME

    def build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the loader built the declared architecture")

    monkeypatch.setattr(release._qlinear, "params_on_meta", build)
    attack = write_tiny_release_declaring_huge_model(tmp_path / "attack", one_tensor_per_layer=True)
    config = json.loads((attack / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": QUANT_METHOD_NAME,
        "format_version": FORMAT_VERSION,
        "modules": {f"model.layers.{i}.mlp.down_proj": "int8" for i in range(4)},
    }
    (attack / "config.json").write_text(json.dumps(config))
    with pytest.raises(OptimizedTierInvalidError) as raised:
        load_model(attack)
    assert isinstance(raised.value.__cause__, WeightMissingError)


def test_a_missing_parameter_is_named(tiny_llama: Path, tmp_path: Path) -> None:
    folder = copy_with(tiny_llama, tmp_path / "m", edit=lambda t: t.pop("model.norm.weight"))
    with pytest.raises(WeightMissingError) as raised:
        check(folder)
    assert raised.value.tensor == "model.norm.weight"
    assert raised.value.code == "weight_missing"


def test_an_untied_head_must_be_stored(tiny_llama: Path, tmp_path: Path) -> None:
    folder = copy_with(tiny_llama, tmp_path / "m", config={"tie_word_embeddings": False})
    with pytest.raises(WeightMissingError) as raised:
        check(folder)
    assert raised.value.tensor == "lm_head.weight"

    def add_head(tensors: dict[str, torch.Tensor]) -> None:
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()

    stored = copy_with(
        tiny_llama, tmp_path / "both", edit=add_head, config={"tie_word_embeddings": False}
    )
    check(stored)


def test_a_misshapen_tensor_is_named(tiny_llama: Path, tmp_path: Path) -> None:
    def shrink(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.norm.weight"] = tensors["model.norm.weight"][:-1].clone()

    folder = copy_with(tiny_llama, tmp_path / "m", edit=shrink)
    with pytest.raises(WeightShapeError) as raised:
        check(folder)
    assert raised.value.tensor == "model.norm.weight"
    assert raised.value.file == "model.safetensors"


def test_a_stored_tensor_outside_the_architecture_is_refused(
    tiny_llama: Path, tmp_path: Path
) -> None:
    def smuggle(tensors: dict[str, torch.Tensor]) -> None:
        tensors["payload"] = torch.zeros(4)

    with pytest.raises(WeightUnexpectedError) as raised:
        check(copy_with(tiny_llama, tmp_path / "m", edit=smuggle))
    assert raised.value.tensor == "payload"


def test_layer_counts_are_bounded_before_the_architecture_is_built(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM

    def build(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("built the architecture")

    monkeypatch.setattr(AutoModelForCausalLM, "from_config", build)
    folder = copy_with(tiny_llama, tmp_path / "m", config={"num_hidden_layers": 1_000_000})
    with pytest.raises(ConfigTooLargeError, match="num_hidden_layers"):
        check(folder)
    nested = {"model_type": "llama", "text_config": {"num_experts": 10**9}}
    with pytest.raises(ConfigTooLargeError, match="num_experts"):
        declared_model(nested, stored_tensor_count=10)


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "no-such-architecture"},
        {"hidden_size": -5},
        {"quantization_config": {"quant_method": "secret-format"}},
        {"quantization_config": {"quant_method": "tiergate", "modules": {"nope": "int8"}}},
    ],
)
def test_configs_that_cannot_be_built_are_typed_errors(config: dict[str, Any]) -> None:
    with pytest.raises(DeclaredWeightsError):
        declared_model({**HUGE_LLAMA, **config}, stored_tensor_count=100)


def test_declaring_is_cheap_for_the_huge_config() -> None:
    """The 1.35 GB config is measured on the meta device, in well under a second of CPU."""
    declared = declared_model(HUGE_LLAMA, stored_tensor_count=100)
    assert declared.load_bytes() > 1_300_000_000
    assert declared.stored_numel == 336_611_328


@pytest.mark.parametrize(("method", "group_size"), [("int8", None), ("int4", 32)])
def test_compressed_tensors_tiers_store_every_declared_tensor(
    tiny_llama: Path, tmp_path: Path, method: str, group_size: int | None
) -> None:
    """The standard optimized formats are checked like the open tier, not waved through."""
    from release.compressed import write_compressed_tier

    out = tmp_path / method
    kwargs = {} if group_size is None else {"group_size": group_size}
    write_compressed_tier(tiny_llama, out, method=method, **kwargs)  # type: ignore[arg-type]
    declared = check(out)
    stored = {n for t in declared.tensors for n in t.names}
    packed = "weight_packed" if method == "int4" else "weight"
    assert any(n.endswith(f"q_proj.{packed}") for n in stored)
    assert any(n.endswith("q_proj.weight_scale") for n in stored)


def test_compressed_tensors_tier_declaring_more_layers_than_stored_is_refused(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """The 13 KB attack in the new format: the config declares layers no file holds."""
    from release.compressed import write_compressed_tier

    out = tmp_path / "int8"
    write_compressed_tier(tiny_llama, out, method="int8")
    current = json.loads((out / "config.json").read_text())
    current["num_hidden_layers"] = current["num_hidden_layers"] + 2
    (out / "config.json").write_text(json.dumps(current))
    with pytest.raises(WeightMissingError):
        check(out)
