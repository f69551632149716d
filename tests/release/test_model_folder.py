from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from release.errors import (
    ModelFolderInvalidError,
    ReleaseError,
    SafetensorsInvalidError,
    UnsafePathError,
)
from release.safetensors_check import validate_model_folder


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    return dst


def _index(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / "model.safetensors.index.json").read_text())
    return data


def _write_index(folder: Path, data: dict[str, object]) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps(data))


def test_single_file_model_validates(tiny_llama: Path) -> None:
    report = validate_model_folder(tiny_llama)
    assert [f.file for f in report.files] == ["model.safetensors"]
    assert report.tensor_count > 10
    assert report.model_type == "llama"
    assert report.has_tokenizer
    assert report.warnings == ()
    assert report.index_file is None


def test_sharded_model_validates(tiny_gpt2_sharded: Path) -> None:
    report = validate_model_folder(tiny_gpt2_sharded)
    assert len(report.files) == 3
    assert report.index_file == "model.safetensors.index.json"
    weight_map = _index(tiny_gpt2_sharded)["weight_map"]
    assert isinstance(weight_map, dict)
    assert report.tensor_count == len(weight_map)


def test_missing_config(tiny_llama: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llama, tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(ModelFolderInvalidError, match=r"config\.json: missing"):
        validate_model_folder(folder)


@pytest.mark.parametrize("content", ["[1, 2]", "{bad json", '{"a": 1, "a": 2}', ""])
def test_config_must_be_a_json_object(tiny_llama: Path, tmp_path: Path, content: str) -> None:
    folder = _copy(tiny_llama, tmp_path)
    (folder / "config.json").write_text(content)
    with pytest.raises(ModelFolderInvalidError) as info:
        validate_model_folder(folder)
    assert info.value.code == "model_folder_invalid"


def test_no_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFolderInvalidError, match=r"no \*\.safetensors"):
        validate_model_folder(tmp_path)


def test_missing_tokenizer_and_pickle_are_warnings(tiny_llama: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llama, tmp_path)
    (folder / "tokenizer.json").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    report = validate_model_folder(folder)
    assert not report.has_tokenizer
    assert any("tokenizer" in w for w in report.warnings)
    assert any("pytorch_model.bin" in w and "pickle" in w for w in report.warnings)


def test_bad_shard_names_file_and_tensor(tiny_gpt2_sharded: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_gpt2_sharded, tmp_path)
    shard = folder / "model-00002-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes() + b"hidden")
    with pytest.raises(SafetensorsInvalidError) as info:
        validate_model_folder(folder)
    assert info.value.file == "model-00002-of-00003.safetensors"
    assert "trailing" in info.value.reason


def test_index_names_missing_shard(tiny_gpt2_sharded: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_gpt2_sharded, tmp_path)
    (folder / "model-00003-of-00003.safetensors").unlink()
    with pytest.raises(SafetensorsInvalidError, match="missing shard"):
        validate_model_folder(folder)


def test_index_tensor_absent_from_shard(tiny_gpt2_sharded: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_gpt2_sharded, tmp_path)
    data = _index(folder)
    weight_map = data["weight_map"]
    assert isinstance(weight_map, dict)
    weight_map["ghost.weight"] = "model-00001-of-00003.safetensors"
    _write_index(folder, data)
    with pytest.raises(SafetensorsInvalidError) as info:
        validate_model_folder(folder)
    assert info.value.tensor == "ghost.weight"
    assert "not in this shard" in info.value.reason


def test_shard_tensor_absent_from_index(tiny_gpt2_sharded: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_gpt2_sharded, tmp_path)
    data = _index(folder)
    weight_map = data["weight_map"]
    assert isinstance(weight_map, dict)
    name = sorted(weight_map)[0]
    del weight_map[name]
    _write_index(folder, data)
    with pytest.raises(SafetensorsInvalidError, match="not listed in the index") as info:
        validate_model_folder(folder)
    assert info.value.tensor == name


def test_tensor_duplicated_in_two_shards(tiny_gpt2_sharded: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_gpt2_sharded, tmp_path)
    weight_map = _index(folder)["weight_map"]
    assert isinstance(weight_map, dict)
    name, owner = sorted(weight_map.items())[0]
    other = next(s for s in sorted(set(weight_map.values())) if s != owner)
    from safetensors.torch import load_file

    tensors = load_file(str(folder / other))
    tensors[name] = torch.zeros(1)
    save_file(tensors, str(folder / other))
    with pytest.raises(SafetensorsInvalidError, match="index names shard") as info:
        validate_model_folder(folder)
    assert info.value.tensor == name


@pytest.mark.parametrize("shard", ["../x.safetensors", "sub/x.safetensors", "x.bin", 7])
def test_index_shard_names_are_plain(
    tiny_gpt2_sharded: Path, tmp_path: Path, shard: object
) -> None:
    folder = _copy(tiny_gpt2_sharded, tmp_path)
    data = _index(folder)
    weight_map = data["weight_map"]
    assert isinstance(weight_map, dict)
    weight_map[sorted(weight_map)[0]] = shard
    _write_index(folder, data)
    with pytest.raises(SafetensorsInvalidError):
        validate_model_folder(folder)


def test_duplicate_tensor_across_unindexed_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "b.safetensors"))
    with pytest.raises(SafetensorsInvalidError, match="duplicate"):
        validate_model_folder(tmp_path)


def test_symlink_escaping_the_folder_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llama, tmp_path)
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (folder / "extra.json").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        validate_model_folder(folder)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["drop", "move", "add", "junk"]),
            st.integers(0, 100),
            st.sampled_from(
                [
                    "model-00001-of-00003.safetensors",
                    "model-00003-of-00003.safetensors",
                    "nope.safetensors",
                    "",
                    "../model-00001-of-00003.safetensors",
                ]
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_index_is_valid_or_typed_error(
    tiny_gpt2_sharded: Path,
    tmp_path_factory: pytest.TempPathFactory,
    edits: list[tuple[str, int, str]],
) -> None:
    folder = tmp_path_factory.mktemp("idx") / "m"
    shutil.copytree(tiny_gpt2_sharded, folder)
    data = _index(folder)
    weight_map = data["weight_map"]
    assert isinstance(weight_map, dict)
    names = sorted(weight_map)
    for kind, index, shard in edits:
        name = names[index % len(names)]
        if kind == "drop":
            weight_map.pop(name, None)
        elif kind == "move":
            weight_map[name] = shard
        elif kind == "add":
            weight_map[f"extra.{index}"] = shard
        else:
            data["weight_map"] = [name] if index % 2 else {name: index}
    _write_index(folder, data)
    with contextlib.suppress(ReleaseError):
        validate_model_folder(folder)
