"""Defensive validation of safetensors files and of a model folder before a release."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from release._paths import list_folder_files, resolve_inside
from release._safetensors_format import (
    DEFAULT_MAX_HEADER_BYTES,
    TensorEntry,
    parse_header,
    strict_json_loads,
)
from release.errors import ModelFolderInvalidError, SafetensorsInvalidError

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "INDEX_FILE_NAME",
    "ModelFolderReport",
    "SafetensorsFileReport",
    "TensorEntry",
    "validate_model_folder",
    "validate_safetensors_file",
]

INDEX_FILE_NAME = "model.safetensors.index.json"
# JSON side files are read whole; a config or an index is kilobytes, so this is generous.
MAX_JSON_FILE_BYTES = 64 * 1024 * 1024
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class SafetensorsFileReport:
    """A safetensors file that passed every check."""

    file: str
    size: int
    header_size: int
    tensors: tuple[TensorEntry, ...]
    metadata: tuple[tuple[str, str], ...]

    @property
    def tensor_count(self) -> int:
        return len(self.tensors)

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(sorted({t.dtype for t in self.tensors}))


@dataclass(frozen=True)
class ModelFolderReport:
    """A model folder that passed validation; ``warnings`` are for people, not fatal."""

    root: Path
    files: tuple[SafetensorsFileReport, ...]
    index_file: str | None
    model_type: str | None
    has_tokenizer: bool
    warnings: tuple[str, ...]

    @property
    def tensor_count(self) -> int:
        return sum(f.tensor_count for f in self.files)

    @property
    def weights_bytes(self) -> int:
        return sum(f.size for f in self.files)


def validate_safetensors_file(
    path: str | os.PathLike[str],
    *,
    label: str | None = None,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> SafetensorsFileReport:
    """Check one safetensors file without trusting its header; raise or return its report.

    ``label`` names the file in errors (default: the path as given). Raises only
    :class:`SafetensorsInvalidError` for malformed content (``OSError`` if it cannot be opened).
    """
    name = label if label is not None else os.fspath(path)
    with open(path, "rb") as fileobj:
        # fstat of the open file, so the size bound refers to the bytes we actually read.
        size = os.fstat(fileobj.fileno()).st_size
        parsed = parse_header(fileobj, size, name, max_header_bytes=max_header_bytes)
    return SafetensorsFileReport(name, size, parsed.header_size, parsed.tensors, parsed.metadata)


def _load_json_file(path: Path, label: str) -> Any:
    try:
        with open(path, "rb") as fileobj:
            size = os.fstat(fileobj.fileno()).st_size
            if size > MAX_JSON_FILE_BYTES:
                raise ModelFolderInvalidError(label, f"{size} bytes, over the JSON size limit")
            raw = fileobj.read(MAX_JSON_FILE_BYTES + 1)
    except OSError as exc:
        raise ModelFolderInvalidError(label, f"cannot read: {exc.strerror}") from None
    try:
        return strict_json_loads(raw)
    except ValueError as exc:
        raise ModelFolderInvalidError(label, f"not valid JSON: {exc}") from None


def _check_index(
    root: Path, index_rel: str, reports: Mapping[str, SafetensorsFileReport]
) -> list[str]:
    """Cross-check a shard index against the shards; return warnings."""
    index = _load_json_file(root / index_rel, index_rel)
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise SafetensorsInvalidError(index_rel, "index has no 'weight_map' object")
    weight_map: dict[str, Any] = index["weight_map"]
    base = PurePosixPath(index_rel).parent
    expected: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise SafetensorsInvalidError(index_rel, "shard name is not a string", tensor)
        if PurePosixPath(shard).name != shard or not shard.endswith(".safetensors"):
            raise SafetensorsInvalidError(
                index_rel, f"shard {shard!r} is not a plain *.safetensors file name", tensor
            )
        shard_rel = (base / shard).as_posix()
        resolve_inside(root, shard_rel)
        if shard_rel not in reports:
            raise SafetensorsInvalidError(index_rel, f"names missing shard {shard!r}", tensor)
        expected.setdefault(shard_rel, set()).add(tensor)
    for shard_rel, names in sorted(expected.items()):
        actual = {t.name for t in reports[shard_rel].tensors}
        absent = sorted(names - actual)
        if absent:
            raise SafetensorsInvalidError(
                shard_rel, "listed in the index but not in this shard", absent[0]
            )
        unlisted = sorted(actual - names)
        if unlisted:
            tensor = unlisted[0]
            owner = weight_map.get(tensor)
            reason = (
                "not listed in the index"
                if owner is None
                else f"also present here but the index names shard {owner!r}"
            )
            raise SafetensorsInvalidError(shard_rel, reason, tensor)
    warnings = []
    for rel in sorted(reports):
        if PurePosixPath(rel).parent == base and rel not in expected:
            warnings.append(f"{rel}: safetensors file not named by {index_rel}; loaders ignore it")
    return warnings


def validate_model_folder(
    model_dir: str | os.PathLike[str],
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> ModelFolderReport:
    """Validate a transformers model folder: config, every safetensors file, the shard index.

    Raises :class:`ModelFolderInvalidError`, :class:`SafetensorsInvalidError` (file, tensor,
    reason) or :class:`~release.errors.UnsafePathError`; returns warnings for what is only
    suspicious (no tokenizer, pickle weights that are not validated, stray shards).
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelFolderInvalidError(str(root), "not a directory")
    listing = dict(list_folder_files(root))
    warnings: list[str] = []

    if "config.json" not in listing:
        raise ModelFolderInvalidError("config.json", "missing")
    config = _load_json_file(listing["config.json"], "config.json")
    if not isinstance(config, dict):
        raise ModelFolderInvalidError("config.json", "not a JSON object")
    model_type = config.get("model_type")

    reports: dict[str, SafetensorsFileReport] = {}
    for rel, real in listing.items():
        if rel.endswith(".safetensors"):
            reports[rel] = validate_safetensors_file(
                real, label=rel, max_header_bytes=max_header_bytes
            )
        elif rel.endswith(_PICKLE_SUFFIXES):
            warnings.append(f"{rel}: pickle-format weights are not validated and can run code")
    if not reports:
        raise ModelFolderInvalidError(str(root), "no *.safetensors weights")

    index_files = sorted(rel for rel in listing if rel.endswith(".safetensors.index.json"))
    for rel in index_files:
        warnings.extend(_check_index(root, rel, reports))
    if not index_files:
        # Without an index nothing says which file owns a tensor; two owners is ambiguous.
        top_level = [rel for rel in reports if "/" not in rel]
        if len(top_level) > 1:
            seen: dict[str, str] = {}
            for rel in sorted(top_level):
                for tensor in reports[rel].tensors:
                    if tensor.name in seen:
                        raise SafetensorsInvalidError(
                            rel, f"duplicate of the tensor in {seen[tensor.name]!r}", tensor.name
                        )
                    seen[tensor.name] = rel

    has_tokenizer = any(name in listing for name in _TOKENIZER_FILES)
    if not has_tokenizer:
        warnings.append("no tokenizer files (tokenizer.json, tokenizer.model, vocab.*) found")
    return ModelFolderReport(
        root=root,
        files=tuple(reports[rel] for rel in sorted(reports)),
        index_file=index_files[0] if index_files else None,
        model_type=model_type if isinstance(model_type, str) else None,
        has_tokenizer=has_tokenizer,
        warnings=tuple(warnings),
    )
