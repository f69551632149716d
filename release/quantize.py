"""Building the optimized tier: weight-only int8 / int4 quantization or a bf16 cast.

Output folder layout (see ``docs/release_optimized_tier.md``): one ``model.safetensors`` where
each quantized linear module ``M`` is stored as ``M.qweight`` + ``M.scales`` (+ ``M.bias``),
every other tensor (embeddings, norms, biases, a kept ``lm_head``) cast to ``keep_dtype``;
``config.json`` gains a ``quantization_config``; tokenizer and other side files are copied.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from release._paths import list_folder_files
from release._progress import Progress, ProgressCallback
from release.errors import QuantizationError
from release.safetensors_check import INDEX_FILE_NAME, validate_model_folder

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "QUANT_METHOD_NAME",
    "QuantMethod",
    "QuantizedTier",
    "quantize_model_folder",
]

QuantMethod = Literal["int8", "int4", "bf16"]
QUANT_METHOD_NAME = "tiergate"
FORMAT_VERSION = 1
DEFAULT_GROUP_SIZE = 64
WEIGHTS_FILE_NAME = "model.safetensors"
_FP16_MAX = 65504.0
# Not copied into the optimized tier: its own weights replace these, and the card and the
# signature are produced per tier later.
_NOT_COPIED = ("README.md", "model.sig", INDEX_FILE_NAME)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt", ".h5", ".msgpack")


@dataclass(frozen=True)
class QuantizedTier:
    """What :func:`quantize_model_folder` wrote.

    ``modules`` maps each quantized module to ``"int8"`` or ``"int4"`` (sorted pairs);
    ``tensor_errors`` holds ``||W - W_q|| / ||W||`` for every floating tensor, sorted by name.
    """

    out_dir: Path
    method: QuantMethod
    group_size: int | None
    keep_dtype: str
    modules: tuple[tuple[str, str], ...]
    tensor_errors: tuple[tuple[str, float], ...]
    open_weights_bytes: int
    optimized_weights_bytes: int
    quantization_config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        return self.optimized_weights_bytes / max(1, self.open_weights_bytes)


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if name not in dtypes:
        raise QuantizationError(f"unsupported keep_dtype {name!r}")
    return dtypes[name]


def _find_linear_modules(
    config_dict: dict[str, Any], skip_modules: Collection[str]
) -> dict[str, bool]:
    """Linear-like modules of the architecture -> whether stored transposed (GPT-2 Conv1D)."""
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    from release._qlinear import params_on_meta

    settings = {k: v for k, v in config_dict.items() if k != "quantization_config"}
    model_type = settings.pop("model_type", None)
    if not isinstance(model_type, str):
        raise QuantizationError("config.json has no model_type")
    try:
        config = AutoConfig.for_model(model_type, **settings)
        with params_on_meta():
            model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    except (ValueError, KeyError, TypeError) as exc:
        raise QuantizationError(f"cannot build architecture {model_type!r}: {exc}") from None
    embeddings = model.get_input_embeddings()
    embedding_weight = getattr(embeddings, "weight", None)
    found: dict[str, bool] = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)):
            continue
        if name.split(".")[-1] in skip_modules or name in skip_modules:
            continue
        # An output head tied to the embeddings is the embedding matrix: keep it precise.
        if module.weight is embedding_weight:
            continue
        found[name] = isinstance(module, Conv1D)
    return found


def _cast(tensor: torch.Tensor, target: torch.dtype) -> torch.Tensor:
    import torch

    if not tensor.is_floating_point() or tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor  # integers untouched; half-precision sources are not re-rounded
    if target == torch.float16 and tensor.numel() and float(tensor.abs().max()) > _FP16_MAX:
        return tensor  # would overflow to inf in float16: keep full precision
    return tensor.to(target)


def _prepare_output(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise QuantizationError(f"{out_dir}: output folder exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)


def quantize_model_folder(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    method: QuantMethod = "int8",
    group_size: int = DEFAULT_GROUP_SIZE,
    keep_dtype: str = "float16",
    skip_modules: Collection[str] = ("lm_head",),
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> QuantizedTier:
    """Write the optimized tier of the (validated) open tier ``model_dir`` into ``out_dir``.

    ``int8``: per-output-channel symmetric int8 for every linear layer (``nn.Linear`` and GPT-2
    ``Conv1D``) except ``skip_modules`` and heads tied to the embeddings. ``int4``: group-wise
    (``group_size`` input columns per scale), packed two per byte; a layer whose width is not
    a multiple of ``group_size`` falls back to int8. ``bf16``: every floating tensor cast to
    bfloat16, loadable by plain ``from_pretrained``. Other floating tensors go to
    ``keep_dtype`` (float16 by default, float32 where float16 would overflow).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from release._quant_kernels import (
        dequantize_int4,
        dequantize_int8,
        quantize_int4,
        quantize_int8,
        relative_error,
    )

    if method not in ("int8", "int4", "bf16"):
        raise QuantizationError(f"unknown method {method!r} (int8, int4 or bf16)")
    if method == "int4" and group_size <= 0:
        raise QuantizationError("group_size must be positive")
    src, out = Path(model_dir), Path(out_dir)
    report = validate_model_folder(src)
    config_dict: dict[str, Any] = json.loads((src / "config.json").read_text("utf-8"))
    if "quantization_config" in config_dict:
        raise QuantizationError("the source model is already quantized")
    target = _torch_dtype("bfloat16" if method == "bf16" else keep_dtype)
    linear = {} if method == "bf16" else _find_linear_modules(config_dict, skip_modules)
    _prepare_output(out)
    try:
        tensors: dict[str, torch.Tensor] = {}
        errors: dict[str, float] = {}
        modules: dict[str, str] = {}
        with Progress(
            report.tensor_count,
            desc=f"quantizing ({method})",
            unit="tensor",
            show_bar=show_progress,
            callback=on_progress,
        ) as progress:
            for file_report in report.files:
                with safe_open(str(src / file_report.file), framework="pt") as reader:
                    for entry in file_report.tensors:
                        name = entry.name
                        tensor = reader.get_tensor(name)
                        module = name.removesuffix(".weight")
                        if name.endswith(".weight") and module in linear:
                            weight = tensor.t() if linear[module] else tensor
                            if weight.dim() != 2 or not weight.is_floating_point():
                                raise QuantizationError(f"{name}: not a 2-D floating weight")
                            if method == "int4" and weight.shape[1] % group_size == 0:
                                qweight, scales = quantize_int4(weight, group_size)
                                approx = dequantize_int4(
                                    qweight, scales, weight.shape[1], group_size
                                )
                                modules[module] = "int4"
                            else:
                                qweight, scales = quantize_int8(weight)
                                approx = dequantize_int8(qweight, scales)
                                modules[module] = "int8"
                            errors[name] = relative_error(weight, approx)
                            tensors[f"{module}.qweight"] = qweight
                            tensors[f"{module}.scales"] = scales
                        else:
                            cast = _cast(tensor, target)
                            if tensor.is_floating_point():
                                errors[name] = relative_error(tensor, cast)
                            tensors[name] = cast.contiguous()
                        progress.advance(1)
        absent = sorted(set(linear) - set(modules))
        if absent:
            raise QuantizationError(
                f"checkpoint tensor names do not match the architecture: no {absent[0]}.weight"
            )

        save_file(tensors, str(out / WEIGHTS_FILE_NAME), metadata={"format": "pt"})
        for rel, real in list_folder_files(src):
            if rel in _NOT_COPIED or rel == "config.json" or rel.endswith(_WEIGHT_SUFFIXES):
                continue
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real, out / rel)
        quant_config: dict[str, Any] = {}
        if method == "bf16":
            config_dict["dtype"] = "bfloat16"
        else:
            quant_config = {
                "quant_method": QUANT_METHOD_NAME,
                "format_version": FORMAT_VERSION,
                "method": method,
                "symmetric": True,
                "group_size": group_size if method == "int4" else None,
                "keep_dtype": keep_dtype,
                "modules": dict(sorted(modules.items())),
            }
            config_dict["quantization_config"] = quant_config
            config_dict["dtype"] = keep_dtype
        (out / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
        return QuantizedTier(
            out_dir=out,
            method=method,
            group_size=group_size if method == "int4" else None,
            keep_dtype="bfloat16" if method == "bf16" else keep_dtype,
            modules=tuple(sorted(modules.items())),
            tensor_errors=tuple(sorted(errors.items())),
            open_weights_bytes=report.weights_bytes,
            optimized_weights_bytes=(out / WEIGHTS_FILE_NAME).stat().st_size,
            quantization_config=quant_config,
        )
    except BaseException:
        # A half-written tier must never be mistaken for a finished one.
        shutil.rmtree(out, ignore_errors=True)
        raise
