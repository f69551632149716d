"""Parsing a safetensors header without trusting any number in it.

Format (https://huggingface.co/docs/safetensors): 8 bytes little-endian u64 ``N``; ``N`` bytes of
UTF-8 JSON (a map from tensor name to ``{"dtype", "shape", "data_offsets"}`` plus an optional
``"__metadata__"`` map of strings), possibly padded with spaces; then the data section. Offsets
are relative to the start of the data section.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from release.errors import SafetensorsInvalidError

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "DTYPE_BITS",
    "MAX_RANK",
    "ParsedHeader",
    "TensorEntry",
    "parse_header",
    "strict_json_loads",
]

# The reference implementation refuses headers above 100 MB; a real header is a few hundred KiB.
DEFAULT_MAX_HEADER_BYTES = 100_000_000
MAX_RANK = 32

# Bits per element; sub-byte types (F4, F6_*) must fill whole bytes tensor-wide.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as declared by the header (already checked)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class ParsedHeader:
    """A checked header: tensors sorted by offset, metadata as sorted pairs."""

    header_size: int
    data_size: int
    tensors: tuple[TensorEntry, ...]
    metadata: tuple[tuple[str, str], ...]


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last duplicate silently; two readers could then disagree on a tensor.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def strict_json_loads(text: str | bytes) -> Any:
    """``json.loads`` refusing duplicate keys and NaN/Infinity.

    Raises ``ValueError`` (with the duplicate key or the JSON error in its message); callers
    wrap it in their own typed error.
    """
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except _DuplicateKeyError as exc:
        raise ValueError(f"duplicate key {exc.key!r}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not valid UTF-8") from None


def _read_exact(fileobj: BinaryIO, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = fileobj.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; JSON true/false is not a size.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(label: str, name: str, raw: object, data_size: int) -> TensorEntry:
    def bad(reason: str) -> SafetensorsInvalidError:
        return SafetensorsInvalidError(label, reason, tensor=name)

    if not name:
        raise bad("empty tensor name")
    if not isinstance(raw, dict):
        raise bad("entry is not a JSON object")
    keys = set(raw)
    if keys != {"dtype", "shape", "data_offsets"}:
        missing = sorted({"dtype", "shape", "data_offsets"} - keys)
        extra = sorted(keys - {"dtype", "shape", "data_offsets"})
        raise bad(f"entry fields wrong (missing {missing}, unexpected {extra})")
    dtype = raw["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise bad(f"unknown dtype {dtype!r}")
    shape = raw["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise bad(f"shape must be a list of at most {MAX_RANK} dimensions")
    if not all(_is_int(dim) and dim >= 0 for dim in shape):
        raise bad(f"shape {shape!r} has a non-integer or negative dimension")
    offsets = raw["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(x) for x in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise bad(f"data_offsets {offsets!r} must be two integers 0 <= begin <= end")
    begin, end = int(offsets[0]), int(offsets[1])
    if end > data_size:
        raise bad(f"data_offsets [{begin}, {end}] outside the data section ({data_size} bytes)")
    # Python ints do not overflow, so a hostile shape cannot wrap this product around.
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise bad(f"{dtype} tensor of shape {shape} does not fill whole bytes")
    if bits // 8 != end - begin:
        raise bad(
            f"shape {shape} x {dtype} is {bits // 8} bytes but data_offsets span {end - begin}"
        )
    return TensorEntry(name, dtype, tuple(int(d) for d in shape), begin, end)


def parse_header(
    fileobj: BinaryIO,
    file_size: int,
    label: str,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> ParsedHeader:
    """Read and check the header of the safetensors file open as ``fileobj`` (at offset 0).

    ``file_size`` must come from ``fstat`` of the same open file. Raises
    :class:`SafetensorsInvalidError` naming ``label`` for every defect, and nothing else.
    """
    if file_size < 8:
        raise SafetensorsInvalidError(label, f"file is {file_size} bytes, shorter than 8")
    prefix = _read_exact(fileobj, 8)
    if prefix is None:
        raise SafetensorsInvalidError(label, "file truncated while reading the header length")
    (header_size,) = struct.unpack("<Q", prefix)
    # Bound before allocating: by our limit and by what the file can actually hold.
    if header_size > max_header_bytes:
        raise SafetensorsInvalidError(
            label, f"header length {header_size} exceeds the limit of {max_header_bytes} bytes"
        )
    if header_size > file_size - 8:
        raise SafetensorsInvalidError(
            label, f"header length {header_size} runs past the end of the {file_size}-byte file"
        )
    if header_size < 2:
        raise SafetensorsInvalidError(label, f"header length {header_size} too small for JSON")
    raw = _read_exact(fileobj, header_size)
    if raw is None:
        raise SafetensorsInvalidError(label, "file truncated inside the header")
    if raw[:1] != b"{":
        raise SafetensorsInvalidError(label, "header does not start with '{'")
    try:
        header = strict_json_loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SafetensorsInvalidError(label, f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise SafetensorsInvalidError(label, "header is not a JSON object")

    metadata: tuple[tuple[str, str], ...] = ()
    if "__metadata__" in header:
        meta = header.pop("__metadata__")
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise SafetensorsInvalidError(label, "__metadata__ must map strings to strings")
        metadata = tuple(sorted(meta.items()))

    data_size = file_size - 8 - header_size
    entries = [_check_entry(label, name, value, data_size) for name, value in header.items()]
    entries.sort(key=lambda e: (e.begin, e.end, e.name))
    # The tensors must tile the data section exactly: a gap or trailing bytes could carry data
    # that no tensor accounts for (and that a signature would still cover, unseen).
    position = 0
    previous: str | None = None
    for entry in entries:
        if entry.begin < position:
            raise SafetensorsInvalidError(
                label, f"bytes [{entry.begin}, {position}) overlap tensor {previous!r}", entry.name
            )
        if entry.begin > position:
            raise SafetensorsInvalidError(
                label, f"{entry.begin - position} unaccounted bytes before this tensor", entry.name
            )
        position = entry.end
        previous = entry.name
    if position != data_size:
        raise SafetensorsInvalidError(
            label, f"{data_size - position} trailing bytes after the last tensor's data"
        )
    return ParsedHeader(header_size, data_size, tuple(entries), metadata)
