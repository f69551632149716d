"""The int8 and int4 optimized tiers in compressed-tensors format (what llm-compressor writes).

vLLM and ``transformers`` load these folders unchanged (``quant_method: compressed-tensors``):

- ``int8``: W8A8, the ``INT8`` preset: symmetric int8 weights with one scale per output channel
  (``format: int-quantized``: ``M.weight`` int8 + ``M.weight_scale`` ``[out, 1]``) and int8
  activations quantized per token at run time (``dynamic: true``);
- ``int4``: W4A16, the ``W4A16`` preset: symmetric int4 weights with one scale per
  ``group_size`` input columns (``format: pack-quantized``: ``M.weight_packed`` int32, eight
  codes a word, ``M.weight_scale`` ``[out, in / group]``, ``M.weight_shape``). A layer whose width
  ``group_size`` does not divide falls back to 8-bit per channel in the same format (a config
  group naming those modules, ahead of the ``Linear`` one; exact names win over the class
  target in both compressed-tensors and vLLM), recorded per module as ``int8`` in
  :attr:`QuantizedTier.modules`.

Scales are computed as compressed-tensors' min-max observer does (``calculate_qparams``) and the
codes by the library's own compressors (``BaseCompressor.compress``), one module at a time, so
the weights are streamed: one source tensor in memory, one output shard held
(:class:`~release._shards.ShardWriter`). ``config.json`` gets its ``quantization_config`` from
``ModelCompressor.update_config``, as llm-compressor's ``save_pretrained`` does. Linear layers
the architecture does not quantize (``lm_head``, a head tied to the embeddings) are listed in
``ignore``; embeddings and norms are cast to ``keep_dtype``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from release._paths import list_folder_files
from release._progress import Progress, ProgressCallback
from release._shards import (
    DEFAULT_MAX_SHARD_SIZE,
    ShardWriter,
    TensorGroup,
    loaded_weight_files,
    parse_size,
    read_tensors,
)
from release.calibration import Calibration, CalibrationMethod, CalibrationText
from release.calibration_layerwise import calibrate_within_memory
from release.errors import CalibrationError, QuantizationError, UnsupportedArchitectureError
from release.quantize import _NOT_COPIED, _WEIGHT_SUFFIXES, QuantizedTier, _cast, _torch_dtype
from release.safetensors_check import validate_model_folder

if TYPE_CHECKING:
    import torch

__all__ = [
    "CT_GROUP_SIZES",
    "DEFAULT_CT_GROUP_SIZE",
    "check_compressed_exportable",
    "write_compressed_tier",
]

CompressedMethod = Literal["int8", "int4"]
DEFAULT_CT_GROUP_SIZE = 128
# The group sizes vLLM's WNA16 kernels (its CPU one included) take.
CT_GROUP_SIZES = (32, 64, 128)
WeightObserver = Literal["minmax", "mse"]
_MAX_SHRINK, _SHRINK_STEPS = 0.3, 16
_BLOCK_ELEMENTS = 2**20


@dataclass(frozen=True)
class _Architecture:
    linear: frozenset[str]  # every nn.Linear module
    quantize: frozenset[str]  # the ones to quantize
    conv1d: tuple[str, ...]  # GPT-2 style Conv1D modules (not expressible)
    in_features: Mapping[str, int]


def _architecture(config_dict: dict[str, Any], skip_modules: Collection[str]) -> _Architecture:
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
    embedding_weight = getattr(model.get_input_embeddings(), "weight", None)
    linear: set[str] = set()
    quantize: set[str] = set()
    conv1d: list[str] = []
    widths: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, Conv1D):
            conv1d.append(name)
            continue
        if not isinstance(module, nn.Linear):
            continue
        linear.add(name)
        widths[name] = module.in_features
        skipped = name.split(".")[-1] in skip_modules or name in skip_modules
        # A head tied to the embeddings is the embedding matrix: keep it precise.
        if not skipped and module.weight is not embedding_weight:
            quantize.add(name)
    return _Architecture(frozenset(linear), frozenset(quantize), tuple(conv1d), widths)


def _schemes(method: CompressedMethod, group_size: int) -> tuple[Any, Any]:
    """(main scheme, int4 fallback scheme) as compressed-tensors presets."""
    from compressed_tensors.quantization.quant_scheme import preset_name_to_scheme

    if method == "int8":
        main = preset_name_to_scheme("W8A8", ["Linear"])
        main.format = "int-quantized"
        return main, None
    main = preset_name_to_scheme("W4A16", ["Linear"])
    assert main.weights is not None
    main.weights.group_size = group_size
    main.format = "pack-quantized"
    fallback = preset_name_to_scheme("W8A16", [])
    assert fallback.weights is not None
    fallback.weights.strategy = "channel"
    fallback.weights.group_size = None
    fallback.format = "pack-quantized"
    return main, fallback


@dataclass(frozen=True)
class _Recipe:
    target: torch.dtype
    quantize: frozenset[str]
    schemes: Mapping[str, Any]  # module -> scheme
    observer: str
    calibration: Calibration | None = None


def _shrink_to_mse(
    rows: torch.Tensor, low: torch.Tensor, high: torch.Tensor, args: Any, target: torch.dtype
) -> torch.Tensor:
    """Per group, the range shrink factor in [1 - _MAX_SHRINK, 1] with the least squared
    quantization error (the "mse" observer idea: clipping a few outliers buys resolution
    for every other weight of the group). ``rows``: ``[out, groups, group]``."""
    import torch
    from compressed_tensors.quantization.utils import calculate_qparams

    qmax = 2 ** (args.num_bits - 1)
    best = torch.ones_like(low)
    best_error = torch.full_like(low, float("inf"))
    for ratio in torch.linspace(1.0, 1.0 - _MAX_SHRINK, _SHRINK_STEPS).tolist():
        scale = calculate_qparams(low * ratio, high * ratio, args)[0].to(target).float()
        codes = torch.clamp(torch.round(rows / scale.unsqueeze(-1)), -qmax, qmax - 1)
        error = (codes * scale.unsqueeze(-1) - rows).square().sum(-1)
        better = error < best_error
        best = torch.where(better, torch.full_like(best, ratio), best)
        best_error = torch.where(better, error, best_error)
    return best


def _observed_scale(w: torch.Tensor, args: Any, target: torch.dtype, observer: str) -> Any:
    """The stored scale (in the tier's dtype) of each row's groups of ``w``."""
    from compressed_tensors.quantization.utils import calculate_qparams

    group = args.group_size if args.strategy == "group" else w.shape[1]
    rows = w.reshape(w.shape[0], -1, group)
    low, high = rows.amin(-1), rows.amax(-1)
    if observer == "mse":
        shrink = _shrink_to_mse(rows, low, high, args, target)
        low, high = low * shrink, high * shrink
    del rows
    # The scale is stored in the tier's dtype; codes are computed against that stored value.
    return calculate_qparams(low, high, args)[0].to(target)


def _gptq_rows(
    w: torch.Tensor, hinv: torch.Tensor, args: Any, target: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ of a block of rows: (weights on the grid, stored scales)."""
    from compressed_tensors.quantization.utils import calculate_range

    from release.calibration import gptq_quantize

    qmin, qmax = (int(v) for v in calculate_range(args, "cpu"))
    group = args.group_size if args.strategy == "group" else w.shape[1]

    def scale_of(columns: torch.Tensor) -> torch.Tensor:
        scale: torch.Tensor = _observed_scale(columns, _channel(args), target, "minmax")
        return scale.float().reshape(-1)

    on_grid, scales = gptq_quantize(w, hinv, group=group, scale_of=scale_of, qmin=qmin, qmax=qmax)
    return on_grid, scales.to(target)


def _channel(args: Any) -> Any:
    """``args`` with one scale per row (for a slice that is exactly one group wide)."""
    return args.model_copy(update={"strategy": "channel", "group_size": None})


def _compress_rows(
    w: torch.Tensor, scheme: Any, target: torch.dtype, observer: str, hinv: torch.Tensor | None
) -> tuple[dict[str, torch.Tensor], float, float]:
    """Compress a block of output rows with the library's compressor (after GPTQ when
    ``hinv`` is given); also return the block's ``||w||^2`` and ``||w - restored||^2``."""
    import torch
    from compressed_tensors.compressors import BaseCompressor

    args = scheme.weights
    if hinv is None:
        source, scale = w, _observed_scale(w, args, target, observer)
    else:
        source, scale = _gptq_rows(w, hinv, args, target)
    compressor = BaseCompressor.get_value_from_registry(scheme.format)
    state = {"weight": source, "weight_scale": scale, "weight_zero_point": torch.zeros(scale.shape)}
    compressed = dict(compressor.compress(state, scheme))
    restored = compressor.decompress(dict(compressed), scheme)["weight"]
    diff = float((w.double() - restored.double()).square().sum())
    return compressed, float(w.double().square().sum()), diff


def _compress(
    module: str,
    weight: torch.Tensor,
    scheme: Any,
    target: torch.dtype,
    observer: str,
    hessian: torch.Tensor | None = None,
) -> tuple[TensorGroup, float]:
    """One linear weight -> its compressed tensors and relative error.

    The library's compressors hold several full-size temporaries per call (codes, int64
    intermediates while packing, the restored weight), so rows are compressed in blocks of
    about ``_BLOCK_ELEMENTS`` weights and the pieces joined: every output row depends on its
    own input row only (under GPTQ too: rows share only the inverse Hessian), so the result
    is the same as one call, at a bounded working set.
    """
    import torch

    from release.calibration import inverse_hessian

    w = weight.to(torch.float32)
    out_features, in_features = w.shape
    step = max(1, _BLOCK_ELEMENTS // max(1, in_features))
    hinv = inverse_hessian(hessian) if hessian is not None else None
    pieces: dict[str, list[torch.Tensor]] = {}
    norm = diff = 0.0
    for first in range(0, out_features, step):
        block, block_norm, block_diff = _compress_rows(
            w[first : first + step], scheme, target, observer, hinv
        )
        norm, diff = norm + block_norm, diff + block_diff
        for key, value in block.items():
            pieces.setdefault(key, []).append(value)
    del w
    joined: dict[str, torch.Tensor] = {}
    for key, values in pieces.items():
        if key == "weight_shape":  # the module's shape, not the block's
            joined[key] = torch.tensor([out_features, in_features], dtype=values[0].dtype)
        else:
            joined[key] = values[0] if len(values) == 1 else torch.cat(values, dim=0)
    error = (diff / norm) ** 0.5 if norm > 0 else 0.0
    return [(f"{module}.{key}", value.contiguous()) for key, value in joined.items()], error


def _convert(
    name: str, tensor: torch.Tensor, recipe: _Recipe
) -> tuple[TensorGroup, str | None, float | None]:
    from release._quant_kernels import relative_error

    module = name.removesuffix(".weight")
    calibration = recipe.calibration
    if calibration is not None:
        tensor = calibration.transform(name, tensor)
    if not (name.endswith(".weight") and module in recipe.quantize):
        cast = _cast(tensor, recipe.target)
        error = relative_error(tensor, cast) if tensor.is_floating_point() else None
        return [(name, cast.contiguous())], None, error
    if tensor.dim() != 2 or not tensor.is_floating_point():
        raise QuantizationError(f"{name}: not a 2-D floating weight")
    scheme = recipe.schemes[module]
    hessian = calibration.hessians.get(module) if calibration is not None else None
    group, error = _compress(module, tensor, scheme, recipe.target, recipe.observer, hessian)
    bits = scheme.weights.num_bits
    return group, "int8" if bits == 8 else "int4", error


def _prepare_output(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise QuantizationError(f"{out_dir}: output folder exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)


def _quantization_config(
    main: Any, fallback: Any, fallback_modules: list[str], ignore: list[str]
) -> Any:
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus

    groups = {"group_0": main}
    if fallback_modules:
        # The by-name group comes first: compressed-tensors' matcher takes the first group
        # that matches a module while listing (and warns that the names matched nothing if
        # the Linear class came first), though it resolves the scheme by specificity.
        fallback.targets = fallback_modules
        groups = {"group_0": fallback, "group_1": main}
    return QuantizationConfig(
        config_groups=groups,
        format=main.format,
        ignore=ignore,
        quantization_status=QuantizationStatus.COMPRESSED,
    )


def _refuse_conv1d(arch: _Architecture, method: str, model_type: object) -> None:
    if arch.conv1d:
        raise UnsupportedArchitectureError(
            f"optimized artifact {method} (compressed-tensors, for vLLM and transformers): "
            f"{model_type} stores its linear layers as Conv1D "
            f"({arch.conv1d[0]}, ...), which compressed-tensors cannot quantize; "
            "build bf16, gguf-q8_0 or gguf-q4_0 for this model instead"
        )


def _calibration(
    src: Path,
    arch: _Architecture,
    method: str,
    calibration: str,
    text: CalibrationText | None,
    strength: float,
) -> Calibration | None:
    if calibration == "none":
        return None
    if calibration.startswith("smoothquant") and method != "int8":
        # W4A16 keeps activations in 16 bits: smoothing would only make weights harder.
        raise CalibrationError(f"{calibration} is for int8 (W8A8), not {method}")
    # The whole-model pass, or one decoder block at a time for models past its memory bound.
    return calibrate_within_memory(
        src,
        arch.quantize,
        method=calibration,  # type: ignore[arg-type]
        text=text,
        smoothing_strength=strength,
    )


def check_compressed_exportable(
    model_dir: str | os.PathLike[str], method: str, group_size: int = DEFAULT_CT_GROUP_SIZE
) -> None:
    """Raise what :func:`write_compressed_tier` would for the architecture or group size,
    without writing anything."""
    if method == "int4" and group_size not in CT_GROUP_SIZES:
        raise QuantizationError(
            f"group size {group_size} is not one of {', '.join(map(str, CT_GROUP_SIZES))}"
        )
    config_dict = json.loads((Path(model_dir) / "config.json").read_text("utf-8"))
    arch = _architecture(config_dict, ("lm_head",))
    _refuse_conv1d(arch, method, config_dict.get("model_type"))


def write_compressed_tier(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    method: CompressedMethod = "int8",
    group_size: int = DEFAULT_CT_GROUP_SIZE,
    keep_dtype: str = "bfloat16",
    skip_modules: Collection[str] = ("lm_head",),
    weight_observer: WeightObserver = "minmax",
    calibration: CalibrationMethod = "none",
    calibration_text: CalibrationText | None = None,
    smoothing_strength: float = 0.5,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> QuantizedTier:
    """Write the compressed-tensors ``int8`` (W8A8) or ``int4`` (W4A16) tier of ``model_dir``.

    ``weight_observer``: ``minmax`` (round-to-nearest over each channel's or group's full
    range, llm-compressor's default) or ``mse`` (each group's range shrunk by up to 30% where
    that lowers its squared error; recorded as the scheme's ``observer``). Data-free either
    way: no calibration text. ``bench/release_formats.py`` measures both.

    ``calibration`` (see :mod:`release.calibration`): ``none`` (round-to-nearest), ``gptq``,
    ``smoothquant`` (``int8`` only: it moves range from the int8 activations to the weights)
    or ``smoothquant+gptq``, on ``calibration_text`` (the packaged default when ``None``).
    What was used (method, text source and sha256, tokens) is :attr:`QuantizedTier.calibration`.

    Refuses architectures whose linear layers are GPT-2 ``Conv1D`` modules: compressed-tensors
    (and so transformers and vLLM) only quantize ``nn.Linear``, and would load such layers
    from a checkpoint they cannot match. Output: Hugging Face safetensors (sharded past
    ``max_shard_size``), ``config.json`` with the standard ``quantization_config``, the
    tokenizer and other side files copied.
    """
    from compressed_tensors.compressors import ModelCompressor

    if method not in ("int8", "int4"):
        raise QuantizationError(f"compressed-tensors method {method!r} is not int8 or int4")
    if method == "int4" and group_size not in CT_GROUP_SIZES:
        raise QuantizationError(
            f"group size {group_size} is not one of {', '.join(map(str, CT_GROUP_SIZES))}"
        )
    shard_bytes = parse_size(max_shard_size)
    src, out = Path(model_dir), Path(out_dir)
    report = validate_model_folder(src)
    sources = loaded_weight_files(report)[0]
    config_dict: dict[str, Any] = json.loads((src / "config.json").read_text("utf-8"))
    if "quantization_config" in config_dict:
        raise QuantizationError("the source model is already quantized")
    arch = _architecture(config_dict, skip_modules)
    _refuse_conv1d(arch, method, config_dict.get("model_type"))
    if weight_observer not in ("minmax", "mse"):
        raise QuantizationError(f"weight observer {weight_observer!r} is not minmax or mse")
    main, fallback = _schemes(method, group_size)
    if weight_observer == "mse":
        for scheme in (main, fallback):
            if scheme is not None:
                scheme.weights.observer = "mse"
    fallback_modules = sorted(
        m for m in arch.quantize if method == "int4" and arch.in_features[m] % group_size != 0
    )
    schemes = {m: (fallback if m in fallback_modules else main) for m in arch.quantize}
    calibrated = _calibration(src, arch, method, calibration, calibration_text, smoothing_strength)
    recipe = _Recipe(_torch_dtype(keep_dtype), arch.quantize, schemes, weight_observer, calibrated)
    _prepare_output(out)
    try:
        errors: dict[str, float] = {}
        modules: dict[str, str] = {}
        writer = ShardWriter(out, shard_bytes)
        with Progress(
            sum(f.tensor_count for f in sources),
            desc=f"quantizing ({method}, compressed-tensors)",
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
                        del group
                        progress.advance(1)
        absent = sorted(arch.quantize - set(modules))
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
        # The source's compute dtype stays (as llm-compressor keeps it): stored tensors are
        # keep_dtype, and engines compute in the config's dtype unless told otherwise.
        (out / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
        ignore = sorted(arch.linear - arch.quantize)
        qconfig = _quantization_config(main, fallback, fallback_modules, ignore)
        ModelCompressor(quantization_config=qconfig).update_config(os.fspath(out))
        written = json.loads((out / "config.json").read_text("utf-8"))
        return QuantizedTier(
            out_dir=out,
            method=method,
            group_size=group_size if method == "int4" else None,
            keep_dtype=keep_dtype,
            modules=tuple(sorted(modules.items())),
            tensor_errors=tuple(sorted(errors.items())),
            open_weights_bytes=report.weights_bytes,
            optimized_weights_bytes=sum((out / name).stat().st_size for name in layout.files),
            quantization_config=written["quantization_config"],
            weight_files=layout.files,
            index_file=layout.index_file,
            calibration=calibrated.record() if calibrated is not None else {"calibration": "none"},
        )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
