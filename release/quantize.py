"""Building the optimized tier: weight-only int8 / int4 quantization or a bf16 cast.

Output folder layout (see ``docs/release_optimized_tier.md``): ``model.safetensors``, or
Hugging Face-style shards with ``model.safetensors.index.json`` past ``max_shard_size``,
where each quantized linear module ``M`` is stored as ``M.qweight`` + ``M.scales`` (same
shard) (+ ``M.bias``), every other tensor (embeddings, norms, biases, a kept ``lm_head``)
cast to ``keep_dtype``; ``config.json`` gains a ``quantization_config``; tokenizer and
other side files are copied. The open tier is streamed: one tensor read at a time, one
output shard held at a time.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from licensing.layout import SIGNATURE_FILE
from release._paths import list_folder_files
from release._progress import Progress, ProgressCallback
from release._shards import (
    DEFAULT_MAX_SHARD_SIZE,
    SINGLE_FILE_NAME,
    ShardWriter,
    TensorGroup,
    loaded_weight_files,
    parse_size,
    read_tensors,
)
from release.errors import QuantizationError
from release.safetensors_check import INDEX_FILE_NAME, validate_model_folder

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_MAX_SHARD_SIZE",
    "QUANT_METHOD_NAME",
    "QuantMethod",
    "QuantizedTier",
    "parse_size",
    "quantize_model_folder",
]

QuantMethod = Literal["int8", "int4", "bf16"]
QUANT_METHOD_NAME = "tiergate"
FORMAT_VERSION = 1
DEFAULT_GROUP_SIZE = 64
WEIGHTS_FILE_NAME = SINGLE_FILE_NAME
_FP16_MAX = 65504.0
# Not copied into the optimized tier: its own weights (and index) replace these, and the
# card and the signature are produced per tier later.
_NOT_COPIED = ("README.md", SIGNATURE_FILE, INDEX_FILE_NAME)
_WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".pkl",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".safetensors.index.json",
    ".bin.index.json",
)


@dataclass(frozen=True)
class QuantizedTier:
    """What :func:`quantize_model_folder` wrote.

    ``modules`` maps each quantized module to ``"int8"`` or ``"int4"`` (sorted pairs);
    ``tensor_errors`` holds ``||W - W_q|| / ||W||`` for every floating tensor, sorted by name;
    ``weight_files`` the safetensors files written (``model.safetensors`` or the shards),
    ``index_file`` the shard index (``None`` for a single file).
    """

    out_dir: Path
    method: str  # a QuantMethod here; an optimization name (release.formats) elsewhere
    group_size: int | None
    keep_dtype: str
    modules: tuple[tuple[str, str], ...]
    tensor_errors: tuple[tuple[str, float], ...]
    open_weights_bytes: int
    optimized_weights_bytes: int
    quantization_config: Mapping[str, Any] = field(default_factory=dict)
    weight_files: tuple[str, ...] = (WEIGHTS_FILE_NAME,)
    index_file: str | None = None
    # How the weights were calibrated (release.calibration.Calibration.record); empty: not.
    calibration: Mapping[str, str | int] = field(default_factory=dict)
    # The external tool that quantized the weights (llama.cpp for GGUF k-quants); None: ours.
    quantizer: str | None = None

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
    if target == torch.float16 and tensor.numel():
        low, high = torch.aminmax(tensor)  # no |tensor| temporary the size of an embedding
        if max(-float(low), float(high)) > _FP16_MAX:
            return tensor  # would overflow to inf in float16: keep full precision
    return tensor.to(target)


@dataclass(frozen=True)
class _Recipe:
    method: QuantMethod
    group_size: int
    target: torch.dtype
    linear: Mapping[str, bool]  # module -> stored transposed (GPT-2 Conv1D)


def _convert(
    name: str, tensor: torch.Tensor, recipe: _Recipe
) -> tuple[TensorGroup, str | None, float | None]:
    """One source tensor -> (output tensors for one shard, quantized kind, relative error)."""
    from release._quant_kernels import (
        dequantization_error,
        quantize_int4,
        quantize_int8,
        relative_error,
    )

    module = name.removesuffix(".weight")
    if not (name.endswith(".weight") and module in recipe.linear):
        cast = _cast(tensor, recipe.target)
        error = relative_error(tensor, cast) if tensor.is_floating_point() else None
        return [(name, cast.contiguous())], None, error
    weight = tensor.t() if recipe.linear[module] else tensor
    if weight.dim() != 2 or not weight.is_floating_point():
        raise QuantizationError(f"{name}: not a 2-D floating weight")
    group: int | None = None
    if recipe.method == "int4" and weight.shape[1] % recipe.group_size == 0:
        group = recipe.group_size
        qweight, scales = quantize_int4(weight, group)
    else:
        qweight, scales = quantize_int8(weight)
    error = dequantization_error(weight, qweight, scales, group)
    kind = "int8" if group is None else "int4"
    return [(f"{module}.qweight", qweight), (f"{module}.scales", scales)], kind, error


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
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
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

    Weights are streamed: the open tier (one file or shards with an index) is read a tensor
    at a time and written in shards of at most ``max_shard_size`` tensor bytes (``int`` or
    a size like ``"2GB"``; 5GB by default), so memory peaks near one shard plus one tensor.
    A tier that fits one shard is a single ``model.safetensors``.
    """
    if method not in ("int8", "int4", "bf16"):
        raise QuantizationError(f"unknown method {method!r} (int8, int4 or bf16)")
    if method == "int4" and group_size <= 0:
        raise QuantizationError("group_size must be positive")
    shard_bytes = parse_size(max_shard_size)
    src, out = Path(model_dir), Path(out_dir)
    report = validate_model_folder(src)
    # The files from_pretrained reads (the index's shards, or top-level files), so the tier
    # matches the open model that fidelity is measured against.
    sources = loaded_weight_files(report)[0]
    config_dict: dict[str, Any] = json.loads((src / "config.json").read_text("utf-8"))
    if "quantization_config" in config_dict:
        raise QuantizationError("the source model is already quantized")
    recipe = _Recipe(
        method=method,
        group_size=group_size,
        target=_torch_dtype("bfloat16" if method == "bf16" else keep_dtype),
        linear={} if method == "bf16" else _find_linear_modules(config_dict, skip_modules),
    )
    _prepare_output(out)
    try:
        errors: dict[str, float] = {}
        modules: dict[str, str] = {}
        writer = ShardWriter(out, shard_bytes)
        with Progress(
            sum(f.tensor_count for f in sources),
            desc=f"quantizing ({method})",
            unit="tensor",
            show_bar=show_progress,
            callback=on_progress,
        ) as progress:
            for file_report in sources:
                with read_tensors(src / file_report.file) as reader:
                    for entry in file_report.tensors:
                        group, kind, error = _convert(
                            entry.name, reader.get_tensor(entry.name), recipe
                        )
                        if kind is not None:
                            modules[entry.name.removesuffix(".weight")] = kind
                        if error is not None:
                            errors[entry.name] = error
                        writer.add(group)
                        del group  # the writer holds the only reference until its shard is out
                        progress.advance(1)
        absent = sorted(set(recipe.linear) - set(modules))
        if absent:
            raise QuantizationError(
                f"checkpoint tensor names do not match the architecture: no {absent[0]}.weight"
            )
        layout = writer.finish()
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
            optimized_weights_bytes=sum((out / name).stat().st_size for name in layout.files),
            quantization_config=quant_config,
            weight_files=layout.files,
            index_file=layout.index_file,
        )
    except BaseException:
        # A half-written tier must never be mistaken for a finished one.
        shutil.rmtree(out, ignore_errors=True)
        raise
