"""Issue #16: calibration of the compressed-tensors tiers (SmoothQuant smoothing, GPTQ).

What is pinned: the default calibration text shares nothing with the held-out fidelity text;
smoothing folds into existing weights without changing the function; GPTQ lowers a layer's
output error against round-to-nearest; calibrated tiers stay plain compressed-tensors (same
tensor names and kinds) and are better on held-out text; the method and the corpus digest
are in the signed statement and the card; bad calibration input is refused with its code.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from release.calibration import (
    CalibrationText,
    calibrate,
    default_calibration_text,
    gptq_quantize,
    inverse_hessian,
    read_calibration_text,
)
from release.compressed import write_compressed_tier
from release.errors import CalibrationError
from release.fidelity import held_out_texts, measure_fidelity


def _shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_default_calibration_text_shares_no_passage_with_the_held_out_text() -> None:
    text = default_calibration_text()
    assert text.source.startswith("python-stdlib: pydoc_data.topics")
    assert re.fullmatch(r"[0-9a-f]{64}", text.sha256)
    held_out = set().union(*(_shingles(t) for t in held_out_texts()))
    calibration = set().union(*(_shingles(t) for t in text.texts))
    assert held_out
    assert calibration
    assert not held_out & calibration


def test_smoothing_folds_into_the_weights_without_changing_the_function(
    tiny_llama: Path,
) -> None:
    from safetensors.torch import load_file

    from release.loader import load_model

    model = load_model(tiny_llama)
    modules = [n for n, m in model.named_modules() if n.endswith(("_proj",))]
    calibration = calibrate(tiny_llama, modules, method="smoothquant", smoothing_strength=0.8)
    # q, k, v, gate, up, down of every layer; o_proj's input (attention output) has no
    # producer weights to fold into.
    assert calibration.smoothed_modules == len([m for m in modules if not m.endswith("o_proj")])
    assert any((f - 1).abs().max() > 0.1 for f in calibration.column_factors.values())
    state = load_file(str(tiny_llama / "model.safetensors"))
    smoothed = {name: calibration.transform(name, t) for name, t in state.items()}
    ids = torch.arange(1, 65).unsqueeze(0)
    with torch.inference_mode():
        reference = model(input_ids=ids).logits
        model.load_state_dict(smoothed, strict=False)
        folded = model(input_ids=ids).logits
    assert torch.allclose(reference, folded, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("group", "bits"), [(32, 4), (64, 8), (128, 4)])
def test_gptq_lowers_the_layer_output_error_against_round_to_nearest(group: int, bits: int) -> None:
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(48, 128, generator=generator)
    # Correlated inputs with a few large channels, as real activations are.
    x = torch.randn(512, 128, generator=generator) @ torch.randn(128, 128, generator=generator)
    x[:, :4] *= 8
    qmax = 2 ** (bits - 1) - 1
    qmin = -qmax - 1

    def scale_of(columns: torch.Tensor) -> torch.Tensor:
        return (columns.abs().amax(1) / ((qmax - qmin) / 2)).clamp_min(1e-8)

    rtn = torch.cat(
        [
            torch.clamp(torch.round(c / scale_of(c)[:, None]), qmin, qmax) * scale_of(c)[:, None]
            for c in w.split(group, dim=1)
        ],
        dim=1,
    )
    hinv = inverse_hessian(x.T @ x)
    gptq, scales = gptq_quantize(w, hinv, group=group, scale_of=scale_of, qmin=qmin, qmax=qmax)
    assert scales.shape == (48, 128 // group)
    # Every weight is on its group's grid.
    codes = gptq / scales.repeat_interleave(group, dim=1)
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.abs().max() <= qmax + 1
    error_rtn = (x @ (w - rtn).T).square().sum()
    error_gptq = (x @ (w - gptq).T).square().sum()
    assert error_gptq < 0.8 * error_rtn


def _tensor_kinds(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    from safetensors import safe_open

    out = {}
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            t = f.get_slice(name)
            out[name] = (t.get_dtype(), tuple(t.get_shape()))
    return out


@pytest.mark.parametrize(
    ("method", "calibration"), [("int8", "smoothquant+gptq"), ("int4", "gptq")]
)
def test_calibrated_tiers_stay_standard_and_are_closer_on_held_out_text(
    method: str, calibration: str, tiny_llama: Path, tmp_path: Path
) -> None:
    plain = write_compressed_tier(tiny_llama, tmp_path / "rtn", method=method)  # type: ignore[arg-type]
    tuned = write_compressed_tier(
        tiny_llama,
        tmp_path / "cal",
        method=method,  # type: ignore[arg-type]
        calibration=calibration,  # type: ignore[arg-type]
    )
    assert plain.calibration == {"calibration": "none"}
    assert tuned.calibration["calibration"] == calibration
    assert tuned.calibration["calibration_sha256"] == default_calibration_text().sha256
    assert _tensor_kinds(tmp_path / "rtn") == _tensor_kinds(tmp_path / "cal")
    config = json.loads((tmp_path / "cal" / "config.json").read_text())
    assert (
        config["quantization_config"]
        == json.loads((tmp_path / "rtn" / "config.json").read_text())["quantization_config"]
    )
    before = measure_fidelity(tiny_llama, tmp_path / "rtn", method=method)
    after = measure_fidelity(tiny_llama, tmp_path / "cal", method=method)
    assert after.mean_kl < before.mean_kl
    assert after.top1_agreement >= 0.97


def test_the_statement_and_card_name_the_calibration_and_its_corpus(
    tiny_llama: Path, tmp_path: Path
) -> None:
    from licensing.keys import PrivateKey
    from release.build import BuildOptions, build_release

    corpus = tmp_path / "calibration.txt"
    corpus.write_text("\n\n".join(["A release is a promise about its weights."] * 40))
    text = read_calibration_text(corpus)
    built = build_release(
        tiny_llama,
        tmp_path / "out",
        key=PrivateKey.generate(),
        options=BuildOptions(
            repo_id="acme/tiny", version="1.0.0", optimize=("int4",), calibration_text=text
        ),
        now=datetime(2026, 1, 1, tzinfo=UTC),
        show_progress=False,
    )
    recipe = built.statement.optimization
    assert recipe["calibration"] == "gptq"  # the int4 default
    assert recipe["calibration_text"] == "file: calibration.txt"
    assert recipe["calibration_sha256"] == text.sha256
    card = (tmp_path / "out" / "optimized" / "README.md").read_text()
    assert f"Calibrated with `gptq` on {recipe['calibration_tokens']} tokens" in card
    assert text.sha256 in card


def test_bad_calibration_input_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n\n")
    with pytest.raises(CalibrationError, match="empty") as caught:
        read_calibration_text(empty)
    assert caught.value.code == "calibration_failed"
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(CalibrationError, match="cannot read"):
        read_calibration_text(tmp_path / "latin1.txt")
    short = CalibrationText("short", "0" * 64, ("two words",))
    with pytest.raises(CalibrationError, match="shorter than"):
        write_compressed_tier(
            tiny_llama, tmp_path / "a", method="int8", calibration="gptq", calibration_text=short
        )
    with pytest.raises(CalibrationError, match="for int8"):
        write_compressed_tier(tiny_llama, tmp_path / "b", method="int4", calibration="smoothquant")
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_cli_calibration_names_are_the_library_methods() -> None:
    from gateway.cli.release_publish import CALIBRATION_NAMES
    from release.calibration import CALIBRATION_METHODS

    assert CALIBRATION_NAMES == CALIBRATION_METHODS


@pytest.mark.parametrize(
    ("config", "method", "expected"),
    [
        # Llama-style norms fold SmoothQuant exactly: int8 smooths, then GPTQ.
        ({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
          "intermediate_size": 128, "vocab_size": 256}, "int8", "smoothquant+gptq"),
        ({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
          "intermediate_size": 128, "vocab_size": 256}, "int4", "gptq"),
        # GPT-2 has LayerNorm with bias: smoothing would be refused, so the default is GPTQ.
        ({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "vocab_size": 256}, "int8", "gptq"),
        # A 7B Llama would need ~50 GB for the whole-model pass: it is calibrated one block
        # at a time (~2 GB).
        ({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
          "intermediate_size": 11008, "vocab_size": 32000}, "int8", "smoothquant+gptq"),
        # A 70B-sized Llama needs more than the bound even one block at a time: RTN.
        ({"model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80,
          "intermediate_size": 28672, "vocab_size": 128256}, "int4", "none"),
        # A config that cannot say its size is not calibrated by default.
        ({"model_type": "llama"}, "int4", "none"),
    ],
)  # fmt: skip
def test_the_default_calibration_follows_the_architecture_and_stays_memory_bounded(
    tmp_path: Path, config: dict[str, object], method: str, expected: str
) -> None:
    from release.calibration import calibration_memory_bytes, default_calibration

    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert default_calibration(tmp_path, method) == expected  # type: ignore[arg-type]
    needed = calibration_memory_bytes(config)
    if needed is not None and needed > 40 * 2**30:
        from release.calibration_layerwise import layerwise_memory_bytes

        layerwise = layerwise_memory_bytes(config)
        assert layerwise is not None
        assert (layerwise > 8 * 2**30) == (expected == "none")
