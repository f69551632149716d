"""Reading and writing sharded safetensors weights, a bounded amount of memory at a time.

The Hugging Face convention: weights that fit one shard are a single ``model.safetensors``;
otherwise ``model-00001-of-0000N.safetensors`` ... plus ``model.safetensors.index.json``
(``{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}``), where
``total_size`` counts tensor data bytes, as ``transformers`` writes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from release.errors import ModelFolderInvalidError, QuantizationError
from release.safetensors_check import (
    INDEX_FILE_NAME,
    ModelFolderReport,
    SafetensorsFileReport,
    _load_json_file,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "SINGLE_FILE_NAME",
    "ShardLayout",
    "ShardWriter",
    "TensorGroup",
    "loaded_weight_files",
    "parse_size",
    "read_tensors",
    "shard_file_name",
]

SINGLE_FILE_NAME = "model.safetensors"
# huggingface_hub's default (``split_torch_state_dict_into_shards``) and what most published
# checkpoints use; transformers 5 raised its own default to 50GB, the Hub's per-file cap,
# but 5GB shards resume and verify in pieces a publisher's upload and a user's download
# can afford to redo.
DEFAULT_MAX_SHARD_SIZE = 5 * 10**9
_SHARD_METADATA = {"format": "pt"}
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")

# Tensors that must land in the same shard (a quantized module's qweight and scales).
TensorGroup = Sequence[tuple[str, "torch.Tensor"]]


def parse_size(value: int | str) -> int:
    """Bytes from ``500MB``, ``2GB``, ``1GiB``, ``1.5GB`` or a plain byte count.

    Decimal units (KB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB)
    powers of 1024, as in ``transformers``; units are case-insensitive. Raises
    :class:`QuantizationError` for anything else, or a size below one byte.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise QuantizationError(f"max shard size must be a size like '2GB', not {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_PATTERN.fullmatch(value)
        unit = match.group(2).upper() if match else ""
        if match is None or unit not in _UNITS:
            raise QuantizationError(
                f"max shard size {value!r} is not a size like 500MB, 2GB or 1GiB"
            )
        size = int(Decimal(match.group(1)) * _UNITS[unit])  # exact: "1.1GB" is 1.1e9 bytes
    if size < 1:
        raise QuantizationError(f"max shard size {value!r} is below one byte")
    return size


def shard_file_name(number: int, count: int) -> str:
    """``model-00001-of-00003.safetensors`` for shard ``number`` (1-based) of ``count``."""
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def loaded_weight_files(
    report: ModelFolderReport,
) -> tuple[tuple[SafetensorsFileReport, ...], tuple[str, ...]]:
    """The safetensors files a ``transformers`` loader reads, and those it ignores.

    With a top-level ``model.safetensors.index.json``: the shards it names; without one:
    every top-level ``*.safetensors`` file. ``report`` must come from
    :func:`~release.safetensors_check.validate_model_folder`, which already checked the
    index against the shards.
    """
    if (report.root / INDEX_FILE_NAME).is_file():
        index = _load_json_file(report.root / INDEX_FILE_NAME, INDEX_FILE_NAME)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):  # changed since it was validated
            raise ModelFolderInvalidError(INDEX_FILE_NAME, "index has no 'weight_map' object")
        named = set(weight_map.values())
    else:
        named = {f.file for f in report.files if PurePosixPath(f.file).parent == PurePosixPath()}
    used = tuple(f for f in report.files if f.file in named)
    ignored = tuple(f.file for f in report.files if f.file not in named)
    return used, ignored


@contextmanager
def read_tensors(path: Path) -> Iterator[Any]:
    """A ``safe_open`` reader whose tensors own their memory.

    The default ``mmap`` backend hands out tensors backed by the mapped file; every page
    read stays resident (and counted in the process's RSS) until the file is closed, so
    reading a 10 GB file tensor by tensor still peaks at 10 GB. The ``pread`` backend
    reads each tensor into its own buffer, freed with the tensor (measured with
    ``bench/release_quantize.py --memory``).
    """
    from safetensors import safe_open

    try:
        reader = safe_open(str(path), framework="pt", backend="pread")
    except TypeError:  # an older safetensors: correct, but memory then follows the mapping
        reader = safe_open(str(path), framework="pt")
    with reader as opened:
        yield opened


@dataclass(frozen=True)
class ShardLayout:
    """Where :class:`ShardWriter` put every tensor.

    ``files``: the weight files in order; ``index_file``: ``None`` for a single
    ``model.safetensors``; ``weight_map``: tensor name -> file; ``total_size``: tensor
    data bytes (the index's ``metadata.total_size``).
    """

    files: tuple[str, ...]
    index_file: str | None
    weight_map: Mapping[str, str]
    total_size: int


class ShardWriter:
    """Collects tensors and writes a shard each time ``max_shard_size`` bytes are held.

    Shard names carry the shard count, which is known only at the end: shards are written
    under temporary names and renamed by :meth:`finish`. Planning the names up front from
    the source headers was the alternative, but the size of a cast tensor depends on its
    values (one that would overflow float16 stays float32), so an exact plan needs a pass
    over every weight first: twice the reads of a model that may be tens of GB, where a
    rename costs nothing.

    A group (:meth:`add`) is never split across shards; a group larger than
    ``max_shard_size`` gets a shard of its own, as in ``transformers``. The writer holds at
    most ``max(max_shard_size, largest group)`` bytes of tensors (``peak_held_bytes``).
    """

    def __init__(self, out_dir: Path, max_shard_size: int) -> None:
        if max_shard_size < 1:
            raise QuantizationError("max shard size must be at least one byte")
        self.out_dir = out_dir
        self.max_shard_size = max_shard_size
        self.held_bytes = 0
        self.peak_held_bytes = 0
        self._pending: list[tuple[str, torch.Tensor]] = []
        self._written: list[tuple[Path, tuple[str, ...]]] = []
        self._names: set[str] = set()
        self._total = 0

    def add(self, group: TensorGroup) -> None:
        """Queue tensors that must share a shard; write the shard once it is full."""
        size = 0
        for name, tensor in group:
            if name in self._names:
                raise QuantizationError(f"{name}: tensor written twice")
            self._names.add(name)
            size += tensor.numel() * tensor.element_size()
        if self._pending and self.held_bytes + size > self.max_shard_size:
            self._flush()
        self._pending.extend(group)
        self.held_bytes += size
        self._total += size
        self.peak_held_bytes = max(self.peak_held_bytes, self.held_bytes)
        if self.held_bytes >= self.max_shard_size:
            self._flush()

    def _flush(self) -> None:
        from safetensors.torch import save_file

        path = self.out_dir / f".shard-{len(self._written) + 1:05d}.safetensors.partial"
        # save_file writes straight from the tensors' memory (no serialized copy).
        save_file(dict(self._pending), str(path), metadata=_SHARD_METADATA)
        self._written.append((path, tuple(name for name, _ in self._pending)))
        self._pending = []
        self.held_bytes = 0

    def finish(self) -> ShardLayout:
        """Write what is left, give the shards their final names, write the index if any."""
        if self._pending or not self._written:
            self._flush()  # an empty model still gets its (empty) model.safetensors
        count = len(self._written)
        names = (
            [SINGLE_FILE_NAME]
            if count == 1
            else [shard_file_name(i, count) for i in range(1, count + 1)]
        )
        weight_map: dict[str, str] = {}
        for (path, tensors), name in zip(self._written, names, strict=True):
            os.replace(path, self.out_dir / name)
            weight_map.update(dict.fromkeys(tensors, name))
        ordered = dict(sorted(weight_map.items()))
        index_file = None
        if count > 1:
            index_file = INDEX_FILE_NAME
            doc = {"metadata": {"total_size": self._total}, "weight_map": ordered}
            (self.out_dir / INDEX_FILE_NAME).write_text(
                json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
        return ShardLayout(tuple(names), index_file, ordered, self._total)
