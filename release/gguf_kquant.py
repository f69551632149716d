"""GGUF k-quant artifacts (Q4_K_M, Q5_K_M, Q6_K), quantized by llama.cpp's own quantizer.

The gguf package writes Q8_0 and Q4_0 itself but only dequantizes k-quants. llama.cpp's
quantizer (``llama_model_quantize`` in libllama, reached through llama-cpp-python: the
``[llamacpp]`` extra, ``make llamacpp``) writes them, with the per-tensor mixes llama.cpp and
Ollama users mean by those names (Q4_K_M: Q6_K for the output head and part of attn_v and
ffn_down; a tensor whose rows are not whole 256-blocks falls back to a 32-block type). So our
writer produces the f16 GGUF (tokenizer and chat template embedded, Llama's rotary halves
interleaved), llama.cpp quantizes it, carrying the metadata over unchanged, and the result is
read back to record, per tensor, the type llama.cpp chose and its error against the open
weights. The statement records which llama.cpp quantized it.

Memory stays bounded: our writer holds one tensor, llama.cpp maps the f16 file and quantizes
it tensor by tensor in slabs of at most :data:`QUANTIZER_BUFFER_BYTES`, and the error pass
reads one tensor at a time. Disk: the f16 file (2 bytes a parameter) exists until the
quantizer is done, in a hidden sibling of the output folder.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path
from types import ModuleType

from release._progress import ProgressCallback
from release.errors import QuantizationError, QuantizerUnavailableError
from release.gguf_export import gguf_file_name, iter_reference_tensors, write_gguf_tier
from release.quantize import QuantizedTier

__all__ = [
    "KQUANT_FILE_TYPES",
    "QUANTIZER_BUFFER_BYTES",
    "check_quantizer_available",
    "quantizer_version",
    "write_kquant_tier",
]

# Our name -> llama.cpp's llama_ftype constant (include/llama.h), looked up on the binding.
KQUANT_FILE_TYPES = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
# llama.cpp's default is 8 GiB of rows in memory at once; a build should stay about one
# shard, and a quarter GiB of rows keeps both of its threads busy.
QUANTIZER_BUFFER_BYTES = 256 * 1024 * 1024
_SUPER_BLOCK = 256  # QK_K: the k-quants' block of weights


def _binding(quant_type: str) -> ModuleType:
    """llama-cpp-python, or the typed error that says how to install it."""
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:  # OSError: the shared library does not load
        raise QuantizerUnavailableError(
            f"optimized artifact gguf-{quant_type} is quantized by llama.cpp's quantizer, "
            "which needs llama-cpp-python: run `make llamacpp` or "
            f"`pip install 'tiergate[llamacpp]'` (compiles llama.cpp; {exc})"
        ) from None
    needed = ("llama_model_quantize", "llama_model_quantize_default_params")
    missing = [n for n in (*needed, KQUANT_FILE_TYPES[quant_type]) if not hasattr(llama_cpp, n)]
    if missing:
        raise QuantizerUnavailableError(
            f"optimized artifact gguf-{quant_type}: this llama-cpp-python "
            f"({getattr(llama_cpp, '__version__', '?')}) lacks {', '.join(missing)}; "
            "install 0.3.36 or later (`make llamacpp`)"
        )
    module: ModuleType = llama_cpp
    return module


def check_quantizer_available(quant_type: str) -> None:
    """Raise :class:`QuantizerUnavailableError` when ``gguf-<quant_type>`` cannot be built
    here (a release build checks every artifact before it writes anything)."""
    if quant_type not in KQUANT_FILE_TYPES:
        raise QuantizationError(f"{quant_type!r} is not a llama.cpp k-quant type")
    _binding(quant_type)


def quantizer_version(binding: ModuleType) -> str:
    """Which llama.cpp quantized the artifact, as the release statement records it."""
    library = "unknown"
    version = getattr(binding, "llama_version", None)
    if version is not None:
        raw = version()
        library = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return f"llama.cpp {library} (llama-cpp-python {getattr(binding, '__version__', '?')})"


def _quantize(binding: ModuleType, source: Path, target: Path, quant_type: str) -> None:
    params = binding.llama_model_quantize_default_params()
    params.ftype = int(getattr(binding, KQUANT_FILE_TYPES[quant_type]))
    params.nthread = 0  # llama.cpp's choice: the hardware threads
    if hasattr(params, "max_buf_size"):  # bindings before 0.3.36 have no bound to set
        params.max_buf_size = QUANTIZER_BUFFER_BYTES
    status = binding.llama_model_quantize(
        os.fsencode(source), os.fsencode(target), ctypes.byref(params)
    )
    if status != 0 or not target.is_file():
        # llama.cpp catches its own exceptions and returns 1; the reason went to its log.
        raise QuantizationError(
            f"llama.cpp's quantizer failed to write gguf-{quant_type} (status {status}; its "
            "log on stderr says why)"
        )


def _measure(model_dir: Path, gguf_path: Path) -> tuple[dict[str, str], dict[str, float], str]:
    """Per source tensor: the type llama.cpp stored it in (quantized ones) and the relative
    error against the open weights; plus the dtype of the 2-D tensors left unquantized."""
    import gguf
    import numpy as np
    import torch

    from release._quant_kernels import relative_error

    reader = gguf.GGUFReader(os.fspath(gguf_path))
    stored = {t.name: t for t in reader.tensors}
    plain = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16}
    modules: dict[str, str] = {}
    errors: dict[str, float] = {}
    kept = "float32"
    for source, target, expected in iter_reference_tensors(model_dir):
        tensor = stored.get(target)
        if tensor is None:
            raise QuantizationError(f"llama.cpp's output lacks tensor {target} ({source})")
        restored = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        # A copy: an F32 tensor dequantizes to a read-only view of the mapped file.
        restored = np.array(restored, dtype=np.float32).reshape(expected.shape)
        if tensor.tensor_type not in plain:
            modules[source.removesuffix(".weight")] = tensor.tensor_type.name.lower()
        elif tensor.tensor_type == gguf.GGMLQuantizationType.F16:
            kept = "float16"
        errors[source] = relative_error(torch.from_numpy(expected), torch.from_numpy(restored))
        del restored, expected
    return modules, errors, kept


def write_kquant_tier(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    quant_type: str = "q4_k_m",
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> QuantizedTier:
    """Write ``out_dir/model-<quant_type>.gguf`` (and the files the other GGUF tiers carry)
    with llama.cpp's quantizer; refused with :class:`QuantizerUnavailableError` before
    anything is written when llama-cpp-python is not installed."""
    if quant_type not in KQUANT_FILE_TYPES:
        raise QuantizationError(
            f"GGUF k-quant type {quant_type!r} is not one of {', '.join(KQUANT_FILE_TYPES)}"
        )
    binding = _binding(quant_type)
    src, out = Path(model_dir), Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QuantizationError(f"{out}: output folder exists and is not empty")
    staging = out.parent / f".{out.name}.f16-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        f16 = write_gguf_tier(
            src, staging, quant_type="f16", show_progress=show_progress, on_progress=on_progress
        )
        out.mkdir(parents=True, exist_ok=True)
        path = out / gguf_file_name(quant_type)
        _quantize(binding, staging / f16.weight_files[0], path, quant_type)
        # config.json and the tokenizer files, as every GGUF tier carries (see gguf_export).
        for item in staging.iterdir():
            if item.is_dir():
                shutil.copytree(item, out / item.name)
            elif item.name != f16.weight_files[0]:
                shutil.copyfile(item, out / item.name)
        shutil.rmtree(staging, ignore_errors=True)
        modules, errors, kept = _measure(src, path)
        version = quantizer_version(binding)
        return QuantizedTier(
            out_dir=out,
            method=f"gguf-{quant_type}",
            group_size=_SUPER_BLOCK,
            keep_dtype=kept,
            modules=tuple(sorted(modules.items())),
            tensor_errors=tuple(sorted(errors.items())),
            open_weights_bytes=f16.open_weights_bytes,
            optimized_weights_bytes=path.stat().st_size,
            quantization_config={"format": "gguf", "type": quant_type, "quantizer": version},
            weight_files=(path.name,),
            index_file=None,
            quantizer=version,
        )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
