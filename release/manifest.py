"""Tier manifests: every file of a tier folder with its sha256 and size, and their check.

A file entry is :class:`licensing.layout.TierFile`, the one type the release statement and the
model_signing bundle use too; ``model.sig`` is :data:`licensing.layout.SIGNATURE_FILE`.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from licensing.errors import TierFileInvalidError
from licensing.layout import SIGNATURE_FILE, TierFile
from release._paths import list_folder_files
from release._progress import ProgressCallback
from release._safetensors_format import strict_json_loads
from release.errors import ManifestInvalidError, TierMismatchError
from release.hashing import DEFAULT_CHUNK_SIZE, hash_files

__all__ = [
    "MANIFEST_VERSION",
    "SIGNATURE_FILE",
    "TierFile",
    "TierManifest",
    "build_tier_manifest",
    "verify_tier_folder",
]

MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TierManifest:
    """The files of one tier, sorted by path, unique."""

    files: tuple[TierFile, ...]

    def __post_init__(self) -> None:
        paths = [f.path for f in self.files]
        if paths != sorted(paths):
            raise ManifestInvalidError("files are not sorted by path")
        if len(set(paths)) != len(paths):
            raise ManifestInvalidError("duplicate file path")

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def get(self, path: str) -> TierFile | None:
        """The entry for ``path``, or ``None``."""
        for entry in self.files:
            if entry.path == path:
                return entry
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace, UTF-8): equal manifests, equal bytes."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    @classmethod
    def from_dict(cls, data: object) -> TierManifest:
        if not isinstance(data, dict) or set(data) != {"version", "files"}:
            raise ManifestInvalidError("manifest must be an object with 'version' and 'files'")
        if data["version"] != MANIFEST_VERSION or isinstance(data["version"], bool):
            raise ManifestInvalidError(f"unsupported manifest version {data['version']!r}")
        raw_files = data["files"]
        if not isinstance(raw_files, list):
            raise ManifestInvalidError("'files' must be a list")
        files = []
        for item in raw_files:
            if not isinstance(item, dict) or set(item) != {"path", "size", "sha256"}:
                raise ManifestInvalidError("each file must have exactly path, size and sha256")
            if not isinstance(item["path"], str):
                raise ManifestInvalidError("file path must be a string")
            try:
                files.append(TierFile(item["path"], item["sha256"], item["size"]))
            except TierFileInvalidError as exc:
                raise ManifestInvalidError(exc.message) from None
        return cls(tuple(files))

    @classmethod
    def from_json(cls, data: bytes | str) -> TierManifest:
        """Parse (strictly: no duplicate keys, no unknown fields) what :meth:`to_json` wrote."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestInvalidError("manifest document too large")
        try:
            parsed = strict_json_loads(data)
        except ValueError as exc:
            raise ManifestInvalidError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(parsed)


def build_tier_manifest(
    tier_dir: str | os.PathLike[str],
    *,
    ignore: Collection[str] = (SIGNATURE_FILE,),
    max_workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> TierManifest:
    """Hash every file of ``tier_dir`` (parallel, streaming) into a :class:`TierManifest`.

    Symlinks leaving the folder, symlinked directories and special files raise
    :class:`~release.errors.UnsafePathError`. ``ignore`` lists relative paths left out.
    """
    listing = list_folder_files(Path(tier_dir), ignore=ignore)
    digests = hash_files(
        listing,
        max_workers=max_workers,
        chunk_size=chunk_size,
        show_progress=show_progress,
        on_progress=on_progress,
    )
    return TierManifest(
        tuple(TierFile(rel, digests[rel].sha256, digests[rel].size) for rel, _ in listing)
    )


def verify_tier_folder(
    tier_dir: str | os.PathLike[str],
    manifest: TierManifest,
    *,
    ignore: Collection[str] = (SIGNATURE_FILE,),
    max_workers: int | None = None,
    show_progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> None:
    """Raise :class:`TierMismatchError` unless ``tier_dir`` holds exactly the manifest's files.

    Sizes are compared before hashing so a truncated download fails fast; files whose size
    already differs are not hashed.
    """
    listing = list_folder_files(Path(tier_dir), ignore=ignore)
    present = dict(listing)
    expected = {f.path: f for f in manifest.files}
    missing = tuple(sorted(set(expected) - set(present)))
    extra = tuple(sorted(set(present) - set(expected)))
    mismatched: list[str] = []
    to_hash: list[tuple[str, Path]] = []
    for rel, real in listing:
        entry = expected.get(rel)
        if entry is None:
            continue
        if os.stat(real).st_size != entry.size:
            mismatched.append(rel)
        else:
            to_hash.append((rel, real))
    digests = hash_files(
        to_hash, max_workers=max_workers, show_progress=show_progress, on_progress=on_progress
    )
    for rel, digest in digests.items():
        entry = expected[rel]
        # Digests are public, but comparing in constant time costs nothing and is the habit.
        if digest.size != entry.size or not hmac.compare_digest(digest.sha256, entry.sha256):
            mismatched.append(rel)
    if missing or extra or mismatched:
        raise TierMismatchError(missing, extra, tuple(sorted(mismatched)))
