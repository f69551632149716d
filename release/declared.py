"""What a model's ``config.json`` declares, checked against what its weight files store.

``transformers`` fills every parameter missing from the files with fresh random values, so
a release of a few kilobytes could declare a model of gigabytes and have every loader
allocate it (issue #14.3). Here the architecture is built on torch's meta device (names,
shapes and dtypes; no memory) and compared with the safetensors headers: every declared
parameter and persistent buffer must be stored, with its shape; nothing else may be stored.
Tied weights (``lm_head`` sharing the embeddings) count once: storing any of their names is
enough. Before building anything, the counts a config may use to multiply modules (layers,
experts) are bounded by what the files could hold.

Public API, also for other weight formats:

- :func:`check_declared_weights` (a validated folder -> :class:`DeclaredModel`, or raise);
- :func:`declared_model` (a config dict -> the declared tensors) and :func:`compare_stored`;
- :func:`register_quantized_layout`: how a ``quantization_config.quant_method`` turns the
  plain meta model into the stored layout (swap modules so their ``state_dict`` names and
  shapes are the packed ones); ``tiergate`` is registered here. Configs with another
  ``quant_method`` are refused until their format registers one (fail closed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from release.errors import (
    ConfigTooLargeError,
    DeclaredWeightsError,
    ReleaseError,
    WeightMissingError,
    WeightShapeError,
    WeightUnexpectedError,
)

if TYPE_CHECKING:
    from torch import nn

    from release._safetensors_format import TensorEntry
    from release.safetensors_check import ModelFolderReport

__all__ = [
    "COUNT_KEYS",
    "MAX_DECLARED_COUNT",
    "DeclaredModel",
    "DeclaredTensor",
    "QuantizedLayout",
    "StoredTensor",
    "check_declared_weights",
    "compare_stored",
    "declared_model",
    "register_quantized_layout",
]

# Config keys that multiply modules. Each such module holds at least one parameter, so a
# count above the number of stored tensors is already invalid; checking that first keeps a
# hostile config from making even the meta build slow (a million layers is a million modules).
COUNT_KEYS = frozenset(
    {
        "num_hidden_layers",
        "n_layer",
        "n_layers",
        "num_layers",
        "num_decoder_layers",
        "num_encoder_layers",
        "encoder_layers",
        "decoder_layers",
        "num_local_experts",
        "num_experts",
        "n_routed_experts",
        "moe_num_experts",
    }
)
# Far above any released model (the largest open ones have ~128 layers, 256 experts).
MAX_DECLARED_COUNT = 4096
_SAFETENSORS_DTYPES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "int32": "I32",
    "int64": "I64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
}

QuantizedLayout = Callable[["nn.Module", Mapping[str, Any]], None]
_LAYOUTS: dict[str, QuantizedLayout] = {}


@dataclass(frozen=True)
class DeclaredTensor:
    """One tensor of the architecture; ``names`` are its aliases (tied weights share one)."""

    names: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str  # torch's name: "float32", "int8", ...
    persistent: bool  # False: a buffer computed at build time, never read from the files
    element_bytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def floating(self) -> bool:
        return self.dtype.startswith(("float", "bfloat"))


@dataclass(frozen=True)
class DeclaredModel:
    """Every tensor a config declares, as built on the meta device."""

    model_type: str
    tensors: tuple[DeclaredTensor, ...]
    base_model_prefix: str
    # Stored names the architecture's own loader ignores (transformers' class attribute).
    ignored_unexpected: tuple[str, ...] = ()

    @property
    def stored_numel(self) -> int:
        """Elements the weight files must hold (each tied group once)."""
        return sum(t.numel for t in self.tensors if t.persistent)

    def load_bytes(self, float_bytes: int = 4) -> int:
        """Memory a loaded model takes: floating tensors at ``float_bytes`` (the compute
        dtype; float32 by default), others at their own size, computed buffers included."""
        return sum(t.numel * (float_bytes if t.floating else t.element_bytes) for t in self.tensors)


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as a safetensors header declares it, and the file holding it."""

    entry: TensorEntry
    file: str


def register_quantized_layout(quant_method: str, layout: QuantizedLayout) -> None:
    """Teach :func:`declared_model` a ``quantization_config.quant_method``.

    ``layout(meta_model, quantization_config)`` runs under ``torch.device("meta")`` and must
    change ``meta_model`` in place so its ``state_dict`` has the stored names, shapes and
    dtypes (raise :class:`~release.errors.DeclaredWeightsError` for a malformed config).
    """
    _LAYOUTS[quant_method] = layout


def _bound_counts(config: Mapping[str, Any], limit: int) -> None:
    """Refuse a module count above ``limit`` anywhere in the (nested) config."""
    stack: list[Any] = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in COUNT_KEYS and isinstance(value, int) and value > limit:
                    raise ConfigTooLargeError(
                        f"{key} = {value} exceeds what the weight files could hold ({limit})"
                    )
                if isinstance(value, (Mapping, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (Mapping, list)))


def declared_model(config: Mapping[str, Any], *, stored_tensor_count: int) -> DeclaredModel:
    """The tensors ``config`` (a parsed ``config.json``) declares, built without allocating.

    ``stored_tensor_count`` bounds the layer and expert counts first (see :data:`COUNT_KEYS`).
    Raises :class:`~release.errors.DeclaredWeightsError` (or its subclass
    :class:`~release.errors.ConfigTooLargeError`) for configs that cannot be built.
    """
    import torch
    from transformers import AutoConfig

    from release.architecture import auto_model_class

    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise DeclaredWeightsError("no model_type string")
    _bound_counts(config, min(MAX_DECLARED_COUNT, stored_tensor_count))
    settings = {
        k: v
        for k, v in config.items()
        if k not in ("model_type", "quantization_config", "dtype", "torch_dtype")
    }
    quantization = config.get("quantization_config")
    layout: QuantizedLayout | None = None
    if quantization is not None:
        method = quantization.get("quant_method") if isinstance(quantization, Mapping) else None
        layout = _LAYOUTS.get(method) if isinstance(method, str) else None
        if layout is None:
            raise DeclaredWeightsError(f"quantization method {method!r} cannot be checked")
    try:
        built = AutoConfig.for_model(model_type, **settings)
        # Every tensor, buffers included, on meta: a causal mask of n_positions^2 or a
        # rotary table costs nothing either.
        with torch.device("meta"):
            model = auto_model_class(config).from_config(built)
            if layout is not None:
                assert isinstance(quantization, Mapping)
                layout(model, quantization)
    except ReleaseError:
        raise
    except Exception as exc:  # foreign architecture code run on untrusted values
        raise DeclaredWeightsError(f"cannot build the declared architecture: {exc}") from None
    return describe_module(model, model_type)


def describe_module(model: nn.Module, model_type: str) -> DeclaredModel:
    """The tensors of a (meta) model, tied aliases grouped."""
    persistent = set(model.state_dict(keep_vars=True))
    groups: dict[int, list[str]] = {}
    tensors: dict[int, Any] = {}
    for name, tensor in [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]:
        groups.setdefault(id(tensor), []).append(name)
        tensors[id(tensor)] = tensor
    declared = []
    for key, names in groups.items():
        tensor = tensors[key]
        declared.append(
            DeclaredTensor(
                names=tuple(names),
                shape=tuple(int(d) for d in tensor.shape),
                dtype=str(tensor.dtype).removeprefix("torch."),
                persistent=any(n in persistent for n in names),
                element_bytes=int(tensor.element_size()),
            )
        )
    ignored = getattr(type(model), "_keys_to_ignore_on_load_unexpected", None) or ()
    return DeclaredModel(
        model_type=model_type,
        tensors=tuple(declared),
        base_model_prefix=str(getattr(model, "base_model_prefix", "") or ""),
        ignored_unexpected=tuple(str(p) for p in ignored),
    )


def _stored_floating(dtype: str) -> bool:
    return dtype.startswith(("F", "BF"))


def compare_stored(declared: DeclaredModel, stored: Mapping[str, StoredTensor]) -> None:
    """Raise unless ``stored`` (tensor name -> where and how it is stored) is ``declared``.

    Names may lack the architecture's base-model prefix (``transformer.``, ``model.``), as
    checkpoints of the bare base model do. Floating tensors may be stored in any floating
    dtype (loaders cast them); integer ones (packed codes) must match exactly.
    """
    by_name = {name: tensor for tensor in declared.tensors for name in tensor.names}
    prefix = declared.base_model_prefix
    found: set[int] = set()
    for name, where in stored.items():
        target = by_name.get(name)
        if target is None and prefix:
            target = by_name.get(f"{prefix}.{name}")
        if target is None:
            if any(re.search(pattern, name) for pattern in declared.ignored_unexpected):
                continue
            raise WeightUnexpectedError("stored but not part of the architecture", name, where.file)
        if not target.persistent:
            continue  # a computed buffer some checkpoints also store; loaders ignore it
        entry = where.entry
        if tuple(entry.shape) != target.shape:
            raise WeightShapeError(
                f"stored shape {list(entry.shape)}, config.json declares {list(target.shape)}",
                name,
                where.file,
            )
        expected = _SAFETENSORS_DTYPES.get(target.dtype, target.dtype)
        if _stored_floating(entry.dtype) != target.floating or (
            not target.floating and entry.dtype != expected
        ):
            raise WeightShapeError(
                f"stored dtype {entry.dtype}, the architecture needs {expected}", name, where.file
            )
        found.add(id(target))
    missing = [t for t in declared.tensors if t.persistent and id(t) not in found]
    if missing:
        stored_numel = sum(math.prod(s.entry.shape) for s in stored.values())
        more = (
            f" (and {len(missing) - 1} more: config.json declares "
            f"{declared.stored_numel:,} parameter values, the weight files store {stored_numel:,})"
            if len(missing) > 1
            else ""
        )
        raise WeightMissingError(
            f"declared with shape {list(missing[0].shape)} but stored in no weight file{more}",
            missing[0].names[0],
        )


def _stored_tensors(files: Iterable[tuple[str, Iterable[TensorEntry]]]) -> dict[str, StoredTensor]:
    stored: dict[str, StoredTensor] = {}
    for file, entries in files:
        for entry in entries:
            stored[entry.name] = StoredTensor(entry, file)
    return stored


def check_declared_weights(report: ModelFolderReport) -> DeclaredModel:
    """Check a folder that passed ``validate_model_folder``: its config against its weights.

    Reads only ``config.json`` and the already-parsed headers; the weights the loader would
    read (the index's shards, or the top-level files) must be exactly the declared tensors.
    """
    from release._shards import loaded_weight_files
    from release.safetensors_check import _load_json_file

    config = _load_json_file(report.root / "config.json", "config.json")
    if not isinstance(config, dict):
        raise DeclaredWeightsError("not a JSON object")
    used, _ignored = loaded_weight_files(report)
    stored = _stored_tensors((f.file, f.tensors) for f in used)
    declared = declared_model(config, stored_tensor_count=len(stored))
    compare_stored(declared, stored)
    return declared


def _tiergate_layout(model: nn.Module, quantization: Mapping[str, Any]) -> None:
    """The ``tiergate`` format: listed linear modules become :class:`QuantizedLinear`."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    from release._qlinear import QuantizedLinear

    modules = quantization.get("modules")
    if not isinstance(modules, Mapping) or not all(
        isinstance(k, str) and v in ("int8", "int4") for k, v in modules.items()
    ):
        raise DeclaredWeightsError("quantization_config.modules is malformed")
    group = quantization.get("group_size")
    for name, kind in modules.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise DeclaredWeightsError("no such module in the architecture", name) from None
        if isinstance(module, Conv1D):
            in_features, out_features = module.weight.shape
        elif isinstance(module, nn.Linear):
            in_features, out_features = module.in_features, module.out_features
        else:
            raise DeclaredWeightsError(f"{type(module).__name__} is not linear", name)
        try:
            replacement = QuantizedLinear(
                int(in_features),
                int(out_features),
                bits=8 if kind == "int8" else 4,
                group_size=group if kind == "int4" and isinstance(group, int) else None,
                bias=module.bias is not None,
            )
        except (ValueError, TypeError) as exc:
            raise DeclaredWeightsError(str(exc), name) from None
        model.set_submodule(name, replacement)


register_quantized_layout("tiergate", _tiergate_layout)


def _ct_target_matches(target: str, name: str, module: nn.Module) -> bool:
    if target.startswith("re:"):
        try:
            return re.fullmatch(target[3:], name) is not None
        except re.error:
            raise DeclaredWeightsError(f"malformed target pattern {target!r}") from None
    return target in (name, type(module).__name__)


def _ct_scheme(
    groups: Mapping[str, Any], ignore: list[str], name: str, module: nn.Module
) -> Mapping[str, Any] | None:
    """The config group that quantizes ``module``: a name or pattern beats a class name."""
    if any(_ct_target_matches(t, name, module) for t in ignore):
        return None
    by_class = None
    for group in groups.values():
        targets = group.get("targets") if isinstance(group, Mapping) else None
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise DeclaredWeightsError("a config group's targets are malformed")
        for target in targets:
            if target == type(module).__name__:
                by_class = by_class or group
            elif _ct_target_matches(target, name, module):
                return group  # type: ignore[no-any-return]
    return by_class


def _compressed_tensors_layout(model: nn.Module, quantization: Mapping[str, Any]) -> None:
    """compressed-tensors (what llm-compressor writes, vLLM and transformers load): each
    quantized linear layer is stored as the format says, symmetric weights only.

    ``int-quantized``: ``weight`` int8 ``[out, in]`` and ``weight_scale`` ``[out, 1]``;
    ``pack-quantized``: ``weight_packed`` int32 ``[out, in * bits / 32]``, ``weight_scale``
    ``[out, in / group]`` (or ``[out, 1]`` per channel) and ``weight_shape`` int64 ``[2]``.
    """
    import torch
    from torch import nn

    groups = quantization.get("config_groups")
    ignore = quantization.get("ignore") or []
    if not isinstance(groups, Mapping) or not groups or not isinstance(ignore, list):
        raise DeclaredWeightsError("quantization_config.config_groups is malformed")
    default_format = quantization.get("format")
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        group = _ct_scheme(groups, [str(t) for t in ignore], name, module)
        if group is None:
            continue
        weights = group.get("weights")
        fmt = group.get("format") or default_format
        if not isinstance(weights, Mapping):
            raise DeclaredWeightsError("a config group has no weights scheme", name)
        bits, strategy = weights.get("num_bits"), weights.get("strategy")
        if weights.get("symmetric") is not True or weights.get("type") != "int":
            raise DeclaredWeightsError("only symmetric integer weights can be checked", name)
        out_features, in_features = int(module.out_features), int(module.in_features)
        if strategy == "group":
            size = weights.get("group_size")
            if not isinstance(size, int) or size <= 0 or in_features % size:
                raise DeclaredWeightsError(
                    f"group_size {size!r} does not divide {in_features}", name
                )
            scale_shape: tuple[int, ...] = (out_features, in_features // size)
        elif strategy == "channel":
            scale_shape = (out_features, 1)
        else:
            raise DeclaredWeightsError(f"weight strategy {strategy!r} cannot be checked", name)
        stored = nn.Module()
        if fmt == "int-quantized" and bits == 8:
            stored.register_buffer(
                "weight", torch.empty(out_features, in_features, dtype=torch.int8)
            )
        elif fmt == "pack-quantized" and bits in (4, 8) and (in_features * bits) % 32 == 0:
            packed = torch.empty(out_features, in_features * bits // 32, dtype=torch.int32)
            stored.register_buffer("weight_packed", packed)
            stored.register_buffer("weight_shape", torch.empty(2, dtype=torch.int64))
        else:
            raise DeclaredWeightsError(f"format {fmt!r} with {bits!r} bits cannot be checked", name)
        stored.weight_scale = nn.Parameter(torch.empty(scale_shape), requires_grad=False)
        if module.bias is not None:
            stored.bias = nn.Parameter(torch.empty(out_features), requires_grad=False)
        model.set_submodule(name, stored)


register_quantized_layout("compressed-tensors", _compressed_tensors_layout)
