"""The GGUF optimized tier for llama.cpp and Ollama: one self-contained ``model-<type>.gguf``.

Written with the ``gguf`` package's writer and quantizer (Q8_0 or Q4_0: the types that package
quantizes itself; ``f16``, every weight float16, is the unquantized baseline llama.cpp's speed
is measured against, a library option rather than an ``--optimize`` name). The file carries
the architecture's hyper-parameters under llama.cpp's keys, the tokenizer
(``tokenizer.ggml.*``: model, pre-tokenizer, tokens, types, merges, special ids) and the chat
template, so ``llama-cli -m model-q8_0.gguf`` needs no other file. Supported: the Llama and
GPT-2 architectures, byte-level BPE tokenizers (GPT-2 style); anything else is
refused with a typed error before a byte is written.

Layout conventions follow llama.cpp's converter (the GGUF spec): tensor names from
``gguf.TensorNameMap``; Llama's q/k projections are stored with their rotary halves
interleaved (llama.cpp's rope is the "normal" one, transformers' the "neox" one); GPT-2's
Conv1D weights are stored transposed to ``[out, in]``. Norms and biases stay float32, the
embeddings (and an untied output head) float16, the other 2-D weights are quantized when
their rows are whole blocks of 32, float16 otherwise (recorded per tensor).

Streaming: the tensor table is computed from the safetensors headers, written first, then
each tensor is read, converted and written in turn, so memory holds one tensor.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release._gguf_tokenizer import read_tokenizer, write_tokenizer_metadata
from release._paths import list_folder_files
from release._progress import Progress, ProgressCallback
from release._shards import loaded_weight_files, read_tensors
from release.errors import QuantizationError, UnsupportedArchitectureError
from release.quantize import _NOT_COPIED, _WEIGHT_SUFFIXES, QuantizedTier
from release.safetensors_check import ModelFolderReport, validate_model_folder

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "GGUF_ARCHITECTURES",
    "check_gguf_exportable",
    "gguf_file_name",
    "iter_reference_tensors",
    "write_gguf_tier",
]

GGUF_ARCHITECTURES = ("llama", "gpt2")
_BLOCK = 32
_GPT2_TRANSPOSED = (
    ".attn.c_attn.weight",
    ".attn.c_proj.weight",
    ".mlp.c_fc.weight",
    ".mlp.c_proj.weight",
)
# Buffers GPT-2 checkpoints may carry that are not weights.
_GPT2_SKIPPED = (".attn.bias", ".attn.masked_bias")


def gguf_file_name(quant_type: str) -> str:
    return f"model-{quant_type}.gguf"


def _permute_rope(weight: torch.Tensor, heads: int) -> torch.Tensor:
    # transformers pairs dimension i with i + d/2 (neox); llama.cpp pairs 2i with 2i+1.
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _hyper_parameters(writer: Any, arch: str, cfg: Mapping[str, Any]) -> None:
    def need(key: str) -> Any:
        value = cfg.get(key)
        if value is None:
            raise QuantizationError(f"config.json lacks {key!r}, needed for GGUF")
        return value

    if arch == "llama":
        heads = int(need("num_attention_heads"))
        hidden = int(need("hidden_size"))
        rope = cfg.get("rope_parameters") or {}
        if cfg.get("rope_scaling") or rope.get("rope_type", "default") != "default":
            raise UnsupportedArchitectureError(
                "optimized artifact gguf (llama.cpp): rope scaling is not exported"
            )
        writer.add_context_length(int(need("max_position_embeddings")))
        writer.add_embedding_length(hidden)
        writer.add_block_count(int(need("num_hidden_layers")))
        writer.add_feed_forward_length(int(need("intermediate_size")))
        writer.add_head_count(heads)
        writer.add_head_count_kv(int(cfg.get("num_key_value_heads") or heads))
        writer.add_layer_norm_rms_eps(float(need("rms_norm_eps")))
        writer.add_rope_freq_base(float(rope.get("rope_theta") or cfg.get("rope_theta") or 1e4))
        writer.add_rope_dimension_count(int(cfg.get("head_dim") or hidden // heads))
        writer.add_vocab_size(int(need("vocab_size")))
    else:
        hidden = int(need("n_embd"))
        writer.add_context_length(int(need("n_positions")))
        writer.add_embedding_length(hidden)
        writer.add_block_count(int(need("n_layer")))
        writer.add_feed_forward_length(int(cfg.get("n_inner") or 4 * hidden))
        writer.add_head_count(int(need("n_head")))
        writer.add_layer_norm_eps(float(need("layer_norm_epsilon")))


@dataclass(frozen=True)
class _Plan:
    source: str  # tensor name in the checkpoint
    target: str  # GGUF tensor name
    shape: tuple[int, ...]  # after transposition
    kind: str  # "q" (quantized), "f16", "f32"


def _plan(arch: str, names: Mapping[str, tuple[int, ...]], blocks: int, tied: bool) -> list[_Plan]:
    import gguf

    model_arch = gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.GPT2
    table = gguf.get_tensor_name_map(model_arch, blocks)
    plan: list[_Plan] = []
    for name, shape in names.items():
        if arch == "gpt2" and name.endswith(_GPT2_SKIPPED):
            continue
        if tied and name == "lm_head.weight":
            continue  # llama.cpp uses token_embd when there is no output tensor
        target = table.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise UnsupportedArchitectureError(
                f"optimized artifact gguf (llama.cpp): no GGUF tensor for {name}"
            )
        if arch == "gpt2" and name.endswith(_GPT2_TRANSPOSED):
            shape = (shape[1], shape[0])
        if len(shape) < 2:
            kind = "f32"
        elif target.startswith(("token_embd", "position_embd", "output.")):
            kind = "f16"
        elif shape[-1] % _BLOCK == 0:
            kind = "q"
        else:
            kind = "f16"
        plan.append(_Plan(name, target, shape, kind))
    return plan


def _to_array(
    entry: _Plan, tensor: torch.Tensor, arch: str, cfg: Mapping[str, Any], qtype: Any
) -> np.ndarray[Any, Any]:
    # qtype is used only for kind "q" entries.
    import gguf
    import numpy as np
    import torch

    data = tensor.to(torch.float32)
    if arch == "gpt2" and entry.source.endswith(_GPT2_TRANSPOSED):
        data = data.t()
    if arch == "llama" and entry.source.endswith("self_attn.q_proj.weight"):
        data = _permute_rope(data, int(cfg["num_attention_heads"]))
    elif arch == "llama" and entry.source.endswith("self_attn.k_proj.weight"):
        heads = int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
        data = _permute_rope(data, heads)
    array = data.contiguous().numpy()
    if entry.kind == "q":
        quantized: np.ndarray[Any, Any] = gguf.quants.quantize(array, qtype)
        return quantized
    return array.astype(np.float16 if entry.kind == "f16" else np.float32)


def check_gguf_exportable(model_dir: str | os.PathLike[str], quant_type: str = "q8_0") -> None:
    """Raise the error :func:`write_gguf_tier` would raise for the architecture or the
    tokenizer, without writing anything (a release build checks every artifact first)."""
    src = Path(model_dir)
    cfg = json.loads((src / "config.json").read_text("utf-8"))
    _check_architecture(cfg, quant_type)
    read_tokenizer(src, int(cfg.get("vocab_size") or 0))
    from release.formats import GGUF_LLAMACPP_TYPES

    if quant_type in GGUF_LLAMACPP_TYPES:
        from release.gguf_kquant import check_quantizer_available

        check_quantizer_available(quant_type)


def _check_architecture(cfg: Mapping[str, Any], quant_type: str) -> None:
    arch = cfg.get("model_type")
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"optimized artifact gguf-{quant_type} (llama.cpp, Ollama): architecture {arch!r} "
            f"is not exported; supported: {', '.join(GGUF_ARCHITECTURES)}"
        )


@dataclass(frozen=True)
class _Export:
    """What the export reads before writing: the checked folder, its config and the plan."""

    report: ModelFolderReport
    cfg: dict[str, Any]
    arch: str
    plan: list[_Plan]


def _export(src: Path, quant_type: str) -> _Export:
    report = validate_model_folder(src)
    sources = loaded_weight_files(report)[0]
    cfg: dict[str, Any] = json.loads((src / "config.json").read_text("utf-8"))
    _check_architecture(cfg, quant_type)
    if "quantization_config" in cfg:
        raise QuantizationError("the source model is already quantized")
    arch = str(cfg.get("model_type"))
    blocks = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0)
    shapes = {e.name: tuple(e.shape) for f in sources for e in f.tensors}
    tied = bool(cfg.get("tie_word_embeddings", True))
    return _Export(report, cfg, arch, _plan(arch, shapes, blocks, tied))


def iter_reference_tensors(
    model_dir: str | os.PathLike[str],
) -> Iterator[tuple[str, str, np.ndarray[Any, Any]]]:
    """Each exported tensor of the open weights laid out as the GGUF file holds it (float32;
    Llama's q/k rotary halves interleaved, GPT-2's Conv1D transposed), one at a time:
    ``(checkpoint name, GGUF name, array)``. What a quantized file is measured against."""
    src = Path(model_dir)
    export = _export(src, "f16")
    by_name = {e.source: e for e in export.plan}
    for file_report in loaded_weight_files(export.report)[0]:
        with read_tensors(src / file_report.file) as reader:
            for tensor_entry in file_report.tensors:
                entry = by_name.get(tensor_entry.name)
                if entry is None:
                    continue
                reference = replace(entry, kind="f32")
                tensor = reader.get_tensor(entry.source)
                yield (
                    entry.source,
                    entry.target,
                    _to_array(reference, tensor, export.arch, export.cfg, None),
                )
                del tensor


def write_gguf_tier(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    quant_type: str = "q8_0",
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> QuantizedTier:
    """Write ``out_dir/model-<quant_type>.gguf`` (plus the open tier's ``config.json``, which
    transformers' GGUF loader needs for GPT-2 models whose context is not 1024).

    ``q8_0``/``q4_0``/``f16`` are written by the gguf package here; the k-quants
    (:data:`release.formats.GGUF_LLAMACPP_TYPES`) by llama.cpp's quantizer from an f16
    export (:mod:`release.gguf_kquant`)."""
    from release.formats import GGUF_LLAMACPP_TYPES

    if quant_type in GGUF_LLAMACPP_TYPES:
        from release.gguf_kquant import write_kquant_tier

        return write_kquant_tier(
            model_dir,
            out_dir,
            quant_type=quant_type,
            show_progress=show_progress,
            on_progress=on_progress,
        )
    import gguf
    import numpy as np

    from release._quant_kernels import relative_error

    qtypes = {
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q4_0": gguf.GGMLQuantizationType.Q4_0,
        "f16": gguf.GGMLQuantizationType.F16,
    }
    file_types = {
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
    }
    if quant_type not in qtypes:
        raise QuantizationError(f"GGUF type {quant_type!r} is not one of {', '.join(qtypes)}")
    src, out = Path(model_dir), Path(out_dir)
    export = _export(src, quant_type)
    report, cfg, arch, plan = export.report, export.cfg, export.arch, export.plan
    sources = loaded_weight_files(report)[0]
    vocab_size = int(cfg.get("vocab_size") or 0)
    tokenizer = read_tokenizer(src, vocab_size)  # refused before anything is written
    if quant_type == "f16":
        # The unquantized baseline llama.cpp's speed is compared with (and what its own
        # quantizer starts from): every 2-D weight float16, nothing block-quantized.
        plan = [replace(e, kind="f16") if e.kind == "q" else e for e in plan]
    qtype = qtypes[quant_type]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QuantizationError(f"{out}: output folder exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    path = out / gguf_file_name(quant_type)
    try:
        writer = gguf.GGUFWriter(os.fspath(path), str(arch))
        writer.add_name(str(cfg.get("_name_or_path") or src.name)[:200])
        writer.add_file_type(file_types[quant_type])
        _hyper_parameters(writer, str(arch), cfg)
        write_tokenizer_metadata(writer, tokenizer)
        for entry in plan:
            if entry.kind == "q":
                nbytes = entry.shape[0] * (entry.shape[1] // _BLOCK)
                nbytes *= gguf.GGML_QUANT_SIZES[qtype][1]
                byte_shape = gguf.quants.quant_shape_to_byte_shape(entry.shape, qtype)
                writer.add_tensor_info(
                    entry.target, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=qtype
                )
            else:
                dtype = np.dtype(np.float16 if entry.kind == "f16" else np.float32)
                count = 1
                for dim in entry.shape:
                    count *= dim
                writer.add_tensor_info(entry.target, entry.shape, dtype, count * dtype.itemsize)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        by_name = {e.source: e for e in plan}
        modules: dict[str, str] = {}
        errors: dict[str, float] = {}
        with Progress(
            len(plan),
            desc=f"writing GGUF ({quant_type})",
            unit="tensor",
            show_bar=show_progress,
            callback=on_progress,
        ) as progress:
            for file_report in sources:
                with read_tensors(src / file_report.file) as reader:
                    for tensor_entry in file_report.tensors:
                        found = by_name.get(tensor_entry.name)
                        if found is None:
                            continue
                        entry = found
                        tensor = reader.get_tensor(entry.source)
                        array = _to_array(entry, tensor, str(arch), cfg, qtype)
                        if entry.kind == "q":
                            modules[entry.source.removesuffix(".weight")] = quant_type
                            restored = gguf.quants.dequantize(array, qtype)
                        else:
                            restored = array.astype(np.float32)
                        import torch

                        expected = _to_array(
                            _Plan(entry.source, entry.target, entry.shape, "f32"),
                            tensor,
                            str(arch),
                            cfg,
                            qtype,
                        )
                        errors[entry.source] = relative_error(
                            torch.from_numpy(expected), torch.from_numpy(restored)
                        )
                        writer.write_tensor_data(array)
                        del tensor, array, restored, expected
                        progress.advance(1)
        writer.close()
        # config.json for transformers' GGUF loader (see the docstring); the tokenizer files
        # for tools that read them next to the weights (the gateway's generation).
        shutil.copyfile(src / "config.json", out / "config.json")
        for rel, real in list_folder_files(src):
            if rel in _NOT_COPIED or rel == "config.json" or rel.endswith(_WEIGHT_SUFFIXES):
                continue
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real, out / rel)
        return QuantizedTier(
            out_dir=out,
            method=f"gguf-{quant_type}",
            group_size=_BLOCK,
            keep_dtype="float16",
            modules=tuple(sorted(modules.items())),
            tensor_errors=tuple(sorted(errors.items())),
            open_weights_bytes=report.weights_bytes,
            optimized_weights_bytes=path.stat().st_size,
            quantization_config={"format": "gguf", "type": quant_type},
            weight_files=(path.name,),
            index_file=None,
        )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
