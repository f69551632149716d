"""Loading an optimized tier back into a working ``transformers`` model.

``load_optimized_model(dir)`` builds the architecture from ``config.json`` with parameters on
the meta device, swaps every module named in ``quantization_config.modules`` for a
:class:`QuantizedLinear`, and assigns the stored tensors (from ``model.safetensors``, or the
shards named by ``model.safetensors.index.json``); memory stays at the packed size.
Folders without a ``quantization_config`` (the bf16 tier, an open tier) load through plain
``from_pretrained``.

That private format (``quant_method: tiergate``) is what releases built before the standard
formats carry; they keep loading here. New tiers are compressed-tensors folders (loaded by
``from_pretrained``, which decompresses them through the compressed-tensors library) or a
single GGUF file (loaded by transformers' GGUF loader): :func:`load_model` picks the loader
from what the folder holds, and :func:`tier_format` says which it is.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from release.errors import DeclaredWeightsError, OptimizedTierInvalidError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from release._qlinear import QuantizedLinear

__all__ = [
    "QuantizedLinear",
    "TierFormat",
    "load_model",
    "load_optimized_model",
    "read_quantization_config",
    "tier_format",
]

TierFormat = Literal["plain", "tiergate", "compressed-tensors", "gguf"]
_COMPRESSED_TENSORS = "compressed-tensors"


def __getattr__(name: str) -> Any:
    # QuantizedLinear needs torch; resolve it on first use so importing this module stays light.
    if name == "QuantizedLinear":
        from release._qlinear import QuantizedLinear

        return QuantizedLinear
    raise AttributeError(name)


def _gguf_files(tier_dir: Path) -> list[Path]:
    return sorted(p for p in tier_dir.glob("*.gguf") if p.is_file())


def _config_json(tier_dir: Path) -> dict[str, Any]:
    from release.safetensors_check import MAX_JSON_FILE_BYTES

    path = tier_dir / "config.json"
    try:
        if path.stat().st_size > MAX_JSON_FILE_BYTES:
            raise OptimizedTierInvalidError(f"{path}: config.json is too large")
        config = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise OptimizedTierInvalidError(f"{path}: cannot read config.json: {exc}") from None
    if not isinstance(config, dict):
        raise OptimizedTierInvalidError(f"{path}: not a JSON object")
    return config


def _raw_quantization_config(tier_dir: Path) -> Any:
    return _config_json(tier_dir).get("quantization_config")


def tier_format(tier_dir: str | os.PathLike[str]) -> TierFormat:
    """What a tier folder holds: one GGUF file, a compressed-tensors or tiergate checkpoint,
    or plain weights. A folder that mixes GGUF and safetensors, holds several GGUF files or
    names an unknown ``quant_method`` is refused: loading it some way would be a guess."""
    root = Path(tier_dir)
    ggufs = _gguf_files(root)
    if ggufs:
        if len(ggufs) > 1 or any(root.glob("*.safetensors")):
            raise OptimizedTierInvalidError(
                f"{root}: a GGUF tier holds exactly one .gguf file and no safetensors"
            )
        return "gguf"
    qc = _raw_quantization_config(root)
    if qc is None:
        return "plain"
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    if method == _COMPRESSED_TENSORS:
        return "compressed-tensors"
    from release.quantize import QUANT_METHOD_NAME

    if method == QUANT_METHOD_NAME:
        return "tiergate"
    raise OptimizedTierInvalidError(f"{root}: unknown quant_method {method!r}")


def read_quantization_config(tier_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checked tiergate ``quantization_config`` of a tier folder, or ``None`` for an
    unquantized one (any other ``quant_method`` is refused: see :func:`tier_format`)."""
    from release.quantize import FORMAT_VERSION, QUANT_METHOD_NAME
    from release.safetensors_check import MAX_JSON_FILE_BYTES

    path = Path(tier_dir) / "config.json"
    try:
        if path.stat().st_size > MAX_JSON_FILE_BYTES:
            raise OptimizedTierInvalidError(f"{path}: config.json is too large")
        config = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise OptimizedTierInvalidError(f"{path}: cannot read config.json: {exc}") from None
    if not isinstance(config, dict):
        raise OptimizedTierInvalidError(f"{path}: not a JSON object")
    qc = config.get("quantization_config")
    if qc is None:
        return None
    if (
        not isinstance(qc, dict)
        or qc.get("quant_method") != QUANT_METHOD_NAME
        or qc.get("format_version") != FORMAT_VERSION
    ):
        raise OptimizedTierInvalidError(
            f"{path}: quantization_config is not a tiergate format {FORMAT_VERSION} config"
        )
    modules = qc.get("modules")
    if not isinstance(modules, dict) or not all(
        isinstance(k, str) and v in ("int8", "int4") for k, v in modules.items()
    ):
        raise OptimizedTierInvalidError(f"{path}: quantization_config.modules is malformed")
    group = qc.get("group_size")
    if "int4" in modules.values() and (
        not isinstance(group, int) or isinstance(group, bool) or group <= 0
    ):
        raise OptimizedTierInvalidError(f"{path}: int4 modules need a positive group_size")
    return qc


def load_model(
    model_dir: str | os.PathLike[str], *, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """Load an open or optimized tier for inference (``eval`` mode, CPU), in any format.

    A safetensors folder is validated first (headers, then :mod:`release.declared`: every
    tensor ``config.json`` declares is stored), so a malformed or incomplete tier raises a
    :class:`~release.errors.ReleaseError` before any weight memory is allocated; so does an
    engine older than the format needs (:class:`~release.errors.EngineVersionError`).
    """
    from release.declared import check_declared_weights
    from release.engines import check_engine_versions
    from release.safetensors_check import validate_model_folder

    kind = tier_format(model_dir)
    if kind == "tiergate":
        return load_optimized_model(model_dir, dtype=dtype)  # it runs the same checks
    check_engine_versions(os.fspath(model_dir), kind)
    if kind != "gguf":
        check_declared_weights(validate_model_folder(model_dir))
    import torch
    from transformers import AutoConfig

    from release.architecture import auto_model_class

    extra: dict[str, Any] = {}
    if kind == "gguf":
        root = Path(model_dir)
        extra["gguf_file"] = _gguf_files(root)[0].name
        if (root / "config.json").is_file():
            # transformers rebuilds GPT-2's config from GGUF with a fixed 1024-position table;
            # the tier's config.json carries the real one.
            extra["config"] = AutoConfig.from_pretrained(os.fspath(root), local_files_only=True)
    with _quiet_loading():
        # A guard model (issue 19) is a sequence classifier; every other tier a causal LM.
        auto = auto_model_class(_config_json(Path(model_dir)))
        model: PreTrainedModel = auto.from_pretrained(
            os.fspath(model_dir), dtype=dtype or torch.float32, local_files_only=True, **extra
        )
    model.train(False)
    return model


def _check_tensor(name: str, tensor: torch.Tensor, expected: torch.Tensor) -> None:
    if tensor.dtype != expected.dtype or tuple(tensor.shape) != tuple(expected.shape):
        raise OptimizedTierInvalidError(
            f"{name}: stored {tensor.dtype} {tuple(tensor.shape)}, "
            f"expected {expected.dtype} {tuple(expected.shape)}"
        )


def load_optimized_model(
    tier_dir: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    use_int8_kernel: bool = True,
    kernel_max_rows: int | None = 4,
) -> PreTrainedModel:
    """Load a tier written by :func:`~release.quantize.quantize_model_folder` (int8 or int4).

    ``dtype`` is the compute dtype of activations and unquantized weights (float32 by
    default: float16 matmuls are slow or missing on CPU). ``use_int8_kernel=False`` forces
    the dequantize-then-matmul path (used to test the kernel against its reference);
    ``kernel_max_rows`` is :class:`QuantizedLinear`'s row limit for the int8 kernel
    (``None``: always use it).
    """
    import torch
    from safetensors.torch import load_file
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    from release._qlinear import QuantizedLinear, params_on_meta
    from release._shards import loaded_weight_files
    from release.declared import check_declared_weights
    from release.safetensors_check import validate_model_folder

    root = Path(tier_dir)
    qc = read_quantization_config(root)
    if qc is None:
        raise OptimizedTierInvalidError(f"{root}: no quantization_config in config.json")
    compute = dtype or torch.float32
    report = validate_model_folder(root)
    # Before building anything: QuantizedLinear allocates its codes at the declared sizes.
    try:
        check_declared_weights(report)
    except DeclaredWeightsError as exc:
        raise OptimizedTierInvalidError(f"{root}: {exc.message}") from exc
    weight_files, ignored = loaded_weight_files(report)
    if ignored:
        # A tier we wrote never has one; a signed file the loader skips is a file unchecked.
        raise OptimizedTierInvalidError(f"{ignored[0]}: safetensors file not part of the weights")
    settings = json.loads((root / "config.json").read_text("utf-8"))
    settings.pop("quantization_config")
    settings.pop("dtype", None)
    model_type = settings.pop("model_type", None)
    try:
        config = AutoConfig.for_model(model_type, **settings)
        with params_on_meta():
            model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    except (ValueError, KeyError, TypeError) as exc:
        raise OptimizedTierInvalidError(f"{root}: cannot build the architecture: {exc}") from None

    for name, kind in qc["modules"].items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise OptimizedTierInvalidError(f"{name}: no such module in the architecture") from None
        if isinstance(module, Conv1D):
            in_features, out_features = module.weight.shape
        elif isinstance(module, nn.Linear):
            in_features, out_features = module.in_features, module.out_features
        else:
            raise OptimizedTierInvalidError(f"{name}: {type(module).__name__} is not linear")
        try:
            replacement = QuantizedLinear(
                in_features,
                out_features,
                bits=8 if kind == "int8" else 4,
                group_size=qc.get("group_size") if kind == "int4" else None,
                bias=module.bias is not None,
                use_kernel=use_int8_kernel,
                kernel_max_rows=kernel_max_rows,
            )
        except ValueError as exc:
            raise OptimizedTierInvalidError(f"{name}: {exc}") from None
        model.set_submodule(name, replacement)

    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for file_report in weight_files:
        for key, tensor in load_file(str(root / file_report.file)).items():
            if key not in expected:
                raise OptimizedTierInvalidError(f"{key}: tensor not part of the architecture")
            if key in state:
                raise OptimizedTierInvalidError(f"{key}: stored in more than one file")
            # Codes and scales must match exactly; other tensors only need the right shape.
            if key.endswith((".qweight", ".scales")) or tensor.shape != expected[key].shape:
                _check_tensor(key, tensor, expected[key])
            elif tensor.is_floating_point():
                tensor = tensor.to(compute)
            state[key] = tensor
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    on_meta = [n for n, p in model.named_parameters() if p.is_meta]
    on_meta += [n for n, b in model.named_buffers() if b.is_meta]
    if on_meta:
        raise OptimizedTierInvalidError(f"{root}: no stored value for {on_meta[0]}")
    model.train(False)
    loaded: PreTrainedModel = model
    return loaded


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar from transformers: our callers (release build, the gateway)
    report progress their own way, and the bar leaked into `tiergate release build`."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
