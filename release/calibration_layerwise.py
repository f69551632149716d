"""Calibration one decoder block at a time, for models whose float32 copy does not fit.

:func:`release.calibration.calibrate` runs the whole open model in float32 and holds every
Hessian until the tier is written. Here the model is built empty (``accelerate``'s meta
device), only the layers before the first block are loaded, and the calibration batch is
caught at the first block's door with the arguments the model passes to every block
(position embeddings, mask). Then, block by block: its weights are read from the shards,
the batch goes through it with the same hooks as the whole-model path (same inputs, same
order: the same statistics), its Hessians are written to a spill folder, its weights are
dropped, and its outputs become the next block's inputs. Peak memory: the embeddings, one
block, the batch's hidden states and one block's Hessians. The writer later reads each
Hessian back from the spill folder when it reaches that tensor.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.calibration import (
    DEFAULT_CALIBRATION_MEMORY_BYTES,
    Calibration,
    CalibrationMethod,
    CalibrationText,
    _calibration_input,
    _Collector,
    _config_number,
    _gptq_hessians,
    _smoothing,
    _smooths,
    calibrate,
    calibration_memory_bytes,
)
from release.errors import CalibrationError

if TYPE_CHECKING:
    import torch

__all__ = ["calibrate_layerwise", "calibrate_within_memory", "layerwise_memory_bytes"]


def layerwise_memory_bytes(
    config: Mapping[str, object], *, seq_len: int = 128, num_sequences: int = 32
) -> int | None:
    """Estimated peak of :func:`calibrate_layerwise`, or None if the config cannot say: the
    embeddings, one block's weights and Hessians, and the batch's hidden states in and out
    of a block, float32 (the Hessians written to the spill folder are on disk, not here)."""
    hidden = _config_number(config, "hidden_size", "n_embd", "d_model")
    vocab = _config_number(config, "vocab_size")
    layers = _config_number(config, "num_hidden_layers", "n_layer")
    if hidden is None or vocab is None or layers is None:
        return None
    inner = _config_number(config, "intermediate_size", "n_inner") or 4 * hidden
    block = 4 * hidden * hidden + 3 * hidden * inner
    hessians = 3 * hidden * hidden + inner * inner
    activations = 2 * num_sequences * seq_len * hidden
    return 4 * (vocab * hidden + block + hessians + activations)


# The whole-model pass's bound past which calibrate_within_memory goes block by block (a
# module attribute so a benchmark or test can force either path).
LAYERWISE_ABOVE_BYTES = DEFAULT_CALIBRATION_MEMORY_BYTES


class _Caught(Exception):
    """Raised by the stand-in first block once it has the block's inputs."""


class _SpilledHessians(Mapping[str, "torch.Tensor"]):
    """Module -> Hessian, each read from the spill folder when asked for (one at a time)."""

    def __init__(self, folder: Path, files: Mapping[str, tuple[str, str]]) -> None:
        self._folder = folder
        self._files = dict(files)  # module -> (file, key)
        weakref.finalize(self, shutil.rmtree, folder, True)

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        file, key = self._files[name]
        with safe_open(os.fspath(self._folder / file), framework="pt") as reader:
            tensor: torch.Tensor = reader.get_tensor(key)
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def _blocks(model: Any) -> tuple[str, Any]:
    """The model's list of decoder blocks and its dotted name."""
    import torch

    count = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count and count:
            return name, module
    raise CalibrationError("layer-at-a-time calibration found no list of decoder blocks")


def _load(module: Any, prefix: str, files: Mapping[str, Path]) -> None:
    """Materialize ``module``'s parameters from the shards (``prefix``: its dotted name)."""
    from accelerate.utils import set_module_tensor_to_device

    from release._shards import read_tensors

    by_file: dict[Path, list[str]] = {}
    for local, _ in module.named_parameters():
        full = f"{prefix}.{local}" if prefix else local
        if full not in files:
            raise CalibrationError(f"layer-at-a-time calibration: {full} is stored nowhere")
        by_file.setdefault(files[full], []).append(local)
    for path, names in by_file.items():
        with read_tensors(path) as reader:
            for local in names:
                full = f"{prefix}.{local}" if prefix else local
                set_module_tensor_to_device(module, local, "cpu", value=reader.get_tensor(full))


def _unload(module: Any) -> None:
    from accelerate.utils import set_module_tensor_to_device

    for local, _ in list(module.named_parameters()):
        set_module_tensor_to_device(module, local, "meta")


_Inputs = list[tuple[Any, tuple[Any, ...], dict[str, Any]]]


def _catch_inputs(model: Any, blocks: Any, batch: Any) -> _Inputs:
    """Per window of the batch: the first block's hidden states, other args and kwargs."""
    import torch

    caught: _Inputs = []

    class Door(torch.nn.Module):
        def forward(self, hidden: Any, *args: Any, **kwargs: Any) -> Any:
            caught.append((hidden, args, kwargs))
            raise _Caught

    first = blocks[0]
    blocks[0] = Door()
    try:
        with torch.inference_mode():
            for window in batch.split(4):  # the whole-model path's windows
                with contextlib.suppress(_Caught):
                    model(input_ids=window, use_cache=False)
    finally:
        blocks[0] = first
    return caught


def calibrate_layerwise(
    model_dir: str | os.PathLike[str],
    modules: Collection[str],
    *,
    method: CalibrationMethod,
    text: CalibrationText | None = None,
    smoothing_strength: float = 0.5,
    seq_len: int = 128,
    num_sequences: int = 32,
    spill_dir: str | os.PathLike[str] | None = None,
) -> Calibration:
    """What :func:`release.calibration.calibrate` returns, computed one block at a time."""
    import torch
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from release._shards import loaded_weight_files
    from release.safetensors_check import validate_model_folder

    root = Path(model_dir)
    corpus, batch = _calibration_input(
        root, method, text, smoothing_strength, seq_len, num_sequences
    )
    report = validate_model_folder(root)
    files = {t.name: root / f.file for f in loaded_weight_files(report)[0] for t in f.tensors}
    config = AutoConfig.from_pretrained(os.fspath(root), local_files_only=True)
    model_type = str(getattr(config, "model_type", ""))
    smooth = _smooths(method, model_type)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.train(False)
    prefix, blocks = _blocks(model)
    outside = sorted(m for m in modules if not m.startswith(prefix + "."))
    if outside:
        # The default skips lm_head, the one linear layer outside the blocks in these models.
        raise CalibrationError(
            f"layer-at-a-time calibration covers the decoder blocks; {outside[0]} is outside"
        )
    # Everything outside the blocks that runs before them (embeddings, position tables);
    # the final norm and head never run (the door stops the pass).
    for name, child in model.named_children():
        _load_outside(child, name, prefix, files)
    inputs = _catch_inputs(model, blocks, batch)
    folder = Path(tempfile.mkdtemp(prefix="tiergate-hessians-", dir=spill_dir))
    spilled: dict[str, tuple[str, str]] = {}
    columns: dict[str, torch.Tensor] = {}
    rows: dict[str, torch.Tensor] = {}
    try:
        for index, block in enumerate(blocks):
            block_name = f"{prefix}.{index}"
            own = sorted(m for m in modules if m.startswith(block_name + "."))
            _load(block, block_name, files)
            collector = _Collector()
            order = {n: i for i, (n, _) in enumerate(block.named_modules())}
            local = sorted(own, key=lambda m: order.get(m[len(block_name) + 1 :], -1))
            handles = [
                block.get_submodule(m[len(block_name) + 1 :]).register_forward_pre_hook(
                    collector.hook(m)
                )
                for m in local
            ]
            outputs = []
            try:
                with torch.inference_mode():
                    for hidden, args, kwargs in inputs:
                        collector.new_batch()
                        out = block(hidden, *args, **kwargs)
                        outputs.append(out[0] if isinstance(out, tuple) else out)
            finally:
                for handle in handles:
                    handle.remove()
            weights = {
                m: block.get_submodule(m[len(block_name) + 1 :])
                .weight.detach()
                .abs()
                .amax(0)
                .to(torch.float32)
                for m in own
            }
            _unload(block)
            cols, divs, smoothed = (
                _smoothing(collector, weights, own, smoothing_strength) if smooth else ({}, {}, {})
            )
            columns |= cols
            rows |= divs
            if method.endswith("gptq"):
                file = f"block-{index}.safetensors"
                owned, owners = _gptq_hessians(collector, own, smoothed)
                spilled |= {name: (file, owner) for name, owner in owners.items()}
                if owned:
                    save_file(
                        {owner: h.contiguous() for owner, h in owned.items()},
                        os.fspath(folder / file),
                    )
            del collector, weights
            inputs = [
                (hidden, args, kwargs)
                for hidden, (_, args, kwargs) in zip(outputs, inputs, strict=True)
            ]
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Calibration(
        method=method,
        text=corpus,
        tokens=int(batch.numel()),
        smoothing_strength=smoothing_strength if smooth else None,
        column_factors=columns,
        row_divisors=rows,
        hessians=_SpilledHessians(folder, spilled),
        smoothed_modules=len(columns),
    )


def _load_outside(child: Any, name: str, blocks_prefix: str, files: Mapping[str, Path]) -> None:
    """Load ``child`` (a top-level module) except the block list inside it."""
    if name == blocks_prefix or name == "lm_head":  # the head never runs here
        return
    if blocks_prefix.startswith(name + "."):
        for sub_name, sub in child.named_children():
            _load_outside(sub, f"{name}.{sub_name}", blocks_prefix, files)
        for local, _ in child.named_parameters(recurse=False):
            _load_param(child, name, local, files)
        return
    if any(f"{name}.{p}" in files for p, _ in child.named_parameters()):
        _load(child, name, files)


def _load_param(module: Any, prefix: str, local: str, files: Mapping[str, Path]) -> None:
    from accelerate.utils import set_module_tensor_to_device

    from release._shards import read_tensors

    full = f"{prefix}.{local}"
    with read_tensors(files[full]) as reader:
        set_module_tensor_to_device(module, local, "cpu", value=reader.get_tensor(full))


def calibrate_within_memory(
    model_dir: str | os.PathLike[str],
    modules: Collection[str],
    *,
    method: CalibrationMethod,
    text: CalibrationText | None = None,
    smoothing_strength: float = 0.5,
    memory_bytes: int | None = None,
) -> Calibration:
    """:func:`release.calibration.calibrate`, or :func:`calibrate_layerwise` (the same
    statistics) when the whole-model pass would need more than ``memory_bytes``
    (:data:`~release.calibration.DEFAULT_CALIBRATION_MEMORY_BYTES` unless given)."""
    import json

    if memory_bytes is None:
        memory_bytes = LAYERWISE_ABOVE_BYTES

    config = json.loads((Path(model_dir) / "config.json").read_text("utf-8"))
    needed = calibration_memory_bytes(config) if isinstance(config, dict) else None
    run = calibrate_layerwise if needed is not None and needed > memory_bytes else calibrate
    return run(model_dir, modules, method=method, text=text, smoothing_strength=smoothing_strength)
