"""The optimized tier in Hugging Face shards: sizes, the writer, the round trip, the loader."""

from __future__ import annotations

import json
import shutil
import weakref
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

import release.quantize
from gateway.cli.release import group
from licensing.keys import PrivateKey, save_public_key
from release._shards import ShardWriter, TensorGroup, parse_size, shard_file_name
from release.build import BuildOptions, build_release
from release.errors import OptimizedTierInvalidError, QuantizationError
from release.fidelity import build_optimized_tier
from release.loader import load_model, load_optimized_model
from release.quantize import QuantizedTier, quantize_model_folder
from release.safetensors_check import INDEX_FILE_NAME, validate_model_folder
from release.verify import verify_tier
from tests.model_signing_cli import model_signing_verify

# Small enough to cut the ~1.1 MB int8 tier of a tiny model into several shards.
SMALL_SHARD = 200_000


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _stored(tier_dir: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(tier_dir.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    return tensors


# ------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500MB", 500 * 10**6),
        ("2GB", 2 * 10**9),
        ("1GiB", 2**30),
        ("64 kib", 64 * 1024),
        ("1.5GB", 1_500_000_000),
        ("5gb", 5 * 10**9),
        ("1234", 1234),
        ("10B", 10),
        (4096, 4096),
    ],
)
def test_parse_size_accepts_usual_spellings(value: int | str, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "GB", "2XB", "-1GB", "0", "0.1B", "1e9", "2 G B", 0, True])
def test_parse_size_rejects_with_our_error(value: int | str) -> None:
    with pytest.raises(QuantizationError, match="size"):
        parse_size(value)


def test_shard_names_follow_the_hub_convention() -> None:
    assert shard_file_name(1, 3) == "model-00001-of-00003.safetensors"


# ------------------------------------------------------------------------ writer


def _group(name: str, nbytes: int) -> TensorGroup:
    return [(name, torch.zeros(nbytes, dtype=torch.uint8))]


def test_writer_fills_shards_and_never_splits_a_group(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, 100)
    writer.add(_group("a", 60))
    writer.add([("m.qweight", torch.zeros(50, dtype=torch.uint8)), ("m.scales", torch.ones(2))])
    writer.add(_group("big", 250))  # alone in a shard larger than the limit
    writer.add(_group("c", 40))
    layout = writer.finish()
    assert layout.files == tuple(shard_file_name(i, 4) for i in range(1, 5))
    assert layout.weight_map == {
        "a": layout.files[0],
        "m.qweight": layout.files[1],
        "m.scales": layout.files[1],
        "big": layout.files[2],
        "c": layout.files[3],
    }
    assert layout.index_file == INDEX_FILE_NAME
    assert layout.total_size == 60 + 58 + 250 + 40
    assert writer.peak_held_bytes == 250
    index = json.loads((tmp_path / INDEX_FILE_NAME).read_text())
    assert index == {"metadata": {"total_size": 408}, "weight_map": dict(layout.weight_map)}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*layout.files, INDEX_FILE_NAME])
    (tmp_path / "config.json").write_text("{}")
    report = validate_model_folder(tmp_path)
    assert report.index_file == INDEX_FILE_NAME
    assert report.tensor_count == 5


@pytest.mark.parametrize("groups", [0, 2])
def test_writer_keeps_a_small_tier_in_one_file(tmp_path: Path, groups: int) -> None:
    writer = ShardWriter(tmp_path, 1000)
    for i in range(groups):
        writer.add(_group(f"t{i}", 10))
    layout = writer.finish()
    assert layout.files == ("model.safetensors",)
    assert layout.index_file is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert set(load_file(str(tmp_path / "model.safetensors"))) == {f"t{i}" for i in range(groups)}


def test_writer_refuses_a_tensor_twice(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, 1000)
    writer.add(_group("t", 10))
    with pytest.raises(QuantizationError, match="twice"):
        writer.add(_group("t", 10))


# ------------------------------------------------------------------- round trip


@pytest.fixture(scope="module")
def gpt2_single(tiny_gpt2_sharded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpt2_single") / "tier"
    quantize_model_folder(tiny_gpt2_sharded, out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def gpt2_shards(tiny_gpt2_sharded: Path, tmp_path_factory: pytest.TempPathFactory) -> QuantizedTier:
    out = tmp_path_factory.mktemp("gpt2_shards") / "tier"
    return quantize_model_folder(
        tiny_gpt2_sharded, out, max_shard_size=SMALL_SHARD, show_progress=False
    )


def test_sharded_open_tier_to_sharded_optimized_tier(
    gpt2_shards: QuantizedTier, gpt2_single: Path
) -> None:
    out = gpt2_shards.out_dir
    count = len(gpt2_shards.weight_files)
    assert count >= 4
    assert gpt2_shards.weight_files == tuple(shard_file_name(i, count) for i in range(1, count + 1))
    assert gpt2_shards.index_file == INDEX_FILE_NAME
    assert not (out / "model.safetensors").exists()
    # The optimized tier passes the same validation as any open tier, index included.
    report = validate_model_folder(out)
    assert report.index_file == INDEX_FILE_NAME
    assert report.warnings == ()
    assert gpt2_shards.optimized_weights_bytes == report.weights_bytes
    # Same tensors, bit for bit, as the single-file tier of the same model.
    sharded, single = _stored(out), _stored(gpt2_single)
    assert sharded.keys() == single.keys()
    assert all(torch.equal(sharded[k], single[k]) for k in single)
    index = json.loads((out / INDEX_FILE_NAME).read_text())
    assert set(index["weight_map"]) == set(single)
    assert index["metadata"]["total_size"] == sum(_tensor_bytes(t) for t in single.values())


def test_qweight_and_scales_share_a_shard(gpt2_shards: QuantizedTier) -> None:
    weight_map = json.loads((gpt2_shards.out_dir / INDEX_FILE_NAME).read_text())["weight_map"]
    for module, _kind in gpt2_shards.modules:
        assert weight_map[f"{module}.qweight"] == weight_map[f"{module}.scales"], module
    # No shard is over the limit unless it holds one group (a tensor, or codes + scales).
    for name in gpt2_shards.weight_files:
        with safe_open(str(gpt2_shards.out_dir / name), framework="pt") as shard:
            sizes = {k: _tensor_bytes(shard.get_tensor(k)) for k in shard.keys()}  # noqa: SIM118
        groups = {k.rsplit(".", 1)[0] if k.endswith((".qweight", ".scales")) else k for k in sizes}
        assert sum(sizes.values()) <= SMALL_SHARD or len(groups) == 1, name


def test_loader_reads_a_sharded_tier_like_the_single_file(
    gpt2_shards: QuantizedTier, gpt2_single: Path
) -> None:
    prompt = torch.tensor([[5, 17, 42, 99, 7, 3]])
    sharded = load_model(gpt2_shards.out_dir)  # the gateway's model cache calls this
    single = load_optimized_model(gpt2_single)
    with torch.inference_mode():
        assert torch.equal(sharded(input_ids=prompt).logits, single(input_ids=prompt).logits)


def test_loader_refuses_a_shard_the_index_does_not_name(
    gpt2_shards: QuantizedTier, tmp_path: Path
) -> None:
    folder = tmp_path / "tier"
    shutil.copytree(gpt2_shards.out_dir, folder)
    shutil.copyfile(folder / gpt2_shards.weight_files[0], folder / "extra.safetensors")
    with pytest.raises(OptimizedTierInvalidError, match=r"extra\.safetensors"):
        load_optimized_model(folder)


def test_single_file_open_tier_to_sharded_int4_with_fidelity(
    tiny_llama: Path, tmp_path: Path
) -> None:
    tier = build_optimized_tier(
        tiny_llama,
        tmp_path / "tier",
        method="int4",
        group_size=64,
        max_shard_size="100KB",
        tier_format="tiergate",
        show_progress=False,
    )
    assert len(tier.quantized.weight_files) > 1
    assert set(dict(tier.quantized.modules).values()) == {"int4"}
    assert tier.fidelity.size_ratio < 0.2
    assert tier.fidelity.size_ratio == pytest.approx(tier.quantized.size_ratio)
    assert tier.fidelity.top1_agreement >= 0.9


def test_bf16_shards_load_with_plain_from_pretrained(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    tier = quantize_model_folder(
        tiny_llama, tmp_path / "bf16", method="bf16", max_shard_size="500KB", show_progress=False
    )
    assert tier.index_file == INDEX_FILE_NAME
    model = AutoModelForCausalLM.from_pretrained(str(tier.out_dir))
    assert model.dtype == torch.bfloat16


# --------------------------------------------------------------- bounded memory


def test_quantizer_holds_at_most_one_shard_of_output(
    tiny_gpt2_sharded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every output tensor still alive when the next group arrives is counted: a quantizer
    that kept its output (the old one held the whole tier) would exceed one shard."""
    live: list[weakref.ref[torch.Tensor]] = []
    worst = {"alive": 0, "total": 0}

    class CountingWriter(ShardWriter):
        def add(self, group: TensorGroup) -> None:
            # Output tensors still alive anywhere (writer, quantizer, a leak) before this group.
            alive = sum(_tensor_bytes(t) for ref in live if (t := ref()) is not None)
            assert alive <= self.max_shard_size, (alive, self.max_shard_size)
            worst["alive"] = max(worst["alive"], alive)
            worst["total"] += sum(_tensor_bytes(t) for _, t in group)
            live.extend(weakref.ref(t) for _, t in group)
            super().add(group)

    monkeypatch.setattr(release.quantize, "ShardWriter", CountingWriter)
    tier = quantize_model_folder(
        tiny_gpt2_sharded, tmp_path / "tier", max_shard_size=SMALL_SHARD, show_progress=False
    )
    assert len(tier.weight_files) >= 4
    assert worst["total"] >= 4 * SMALL_SHARD  # the bound below is not trivially met
    assert 0 < worst["alive"] <= SMALL_SHARD


# ------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("command", ["quantize", "build"])
def test_cli_rejects_a_bad_max_shard_size(command: str, tiny_llama: Path, tmp_path: Path) -> None:
    args = [command, str(tiny_llama), "--out", str(tmp_path / "out"), "--max-shard-size", "2XB"]
    if command == "build":
        key = tmp_path / "k.pem"
        key.write_text("unused: the size is checked first")
        args += ["--repo", "acme/tiny", "--version", "1.0.0", "--key", str(key)]
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 2
    assert "Invalid value for '--max-shard-size'" in result.output
    assert "'2XB' is not a size like 500MB, 2GB or 1GiB" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_quantize_writes_shards(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "opt"
    args = ["quantize", str(tiny_llama), "--out", str(out), "--max-shard-size", "300KB"]
    result = CliRunner().invoke(group, [*args, "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["weight_files"]) > 1
    assert (out / INDEX_FILE_NAME).is_file()


def test_library_rejects_a_bad_size_before_writing(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="not a size"):
        quantize_model_folder(tiny_llama, tmp_path / "out", max_shard_size="lots")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- downstream


def test_sharded_release_signs_verifies_and_lists_every_shard(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """Signing, `release verify`, the real model_signing CLI, the card and the statement."""
    key = PrivateKey.generate()
    pub = save_public_key(key.public_key, tmp_path / "pub.pem")
    built = build_release(
        tiny_llama,
        tmp_path / "release",
        key=key,
        options=BuildOptions(repo_id="acme/tiny", version="1.0.0", max_shard_size="400KB"),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    tier = tmp_path / "release" / "optimized"
    shards = sorted(p.name for p in tier.glob("model-*.safetensors"))
    assert len(shards) >= 2
    assert verify_tier(tier, key.public_key).files == len(built.tiers["optimized"].files)
    listed = [f.path for f in built.tiers["optimized"].files]
    stated = next(t for t in built.statement.tiers if t.name == "optimized")
    card = (tier / "README.md").read_text()
    for name in [*shards, INDEX_FILE_NAME]:
        assert name in listed
        assert name in {f.path for f in stated.files}
        assert f"`{name}`" in card
    checked = model_signing_verify(tier, pub)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert built.fidelity.top1_agreement >= 0.97
