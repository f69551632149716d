"""Listing the files of a folder without following anything out of it."""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from release.errors import UnsafePathError

__all__ = ["list_folder_files", "resolve_inside"]


def resolve_inside(root: Path, relpath: str) -> Path:
    """Return ``root / relpath`` after checking it stays inside ``root`` once resolved."""
    pure = PurePosixPath(relpath)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in relpath:
        raise UnsafePathError(relpath, "not a plain relative path inside the folder")
    real_root = root.resolve()
    candidate = (root / Path(*pure.parts)).resolve()
    if not candidate.is_relative_to(real_root):
        raise UnsafePathError(relpath, "resolves outside the folder")
    return candidate


def list_folder_files(root: Path, *, ignore: Collection[str] = ()) -> list[tuple[str, Path]]:
    """Every regular file under ``root`` as sorted ``(relative posix path, resolved path)``.

    Symlinks to files inside the folder are listed under their own name (their content is the
    target's); symlinks that leave the folder, symlinked directories and special files
    (fifos, sockets, devices) raise :class:`UnsafePathError`, because a manifest that silently
    skipped them would not describe what a downloader gets. ``ignore`` holds relative paths
    left out (the signature file ``model.sig``, which signs the rest).
    """
    real_root = root.resolve()
    if not real_root.is_dir():
        raise UnsafePathError(str(root), "not a directory")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(real_root, followlinks=False):
        here = Path(dirpath)
        for name in dirnames:
            if (here / name).is_symlink():
                rel = (here / name).relative_to(real_root).as_posix()
                raise UnsafePathError(rel, "symlinked directories are not allowed")
        dirnames.sort()
        for name in filenames:
            path = here / name
            rel = path.relative_to(real_root).as_posix()
            if rel in ignore:
                continue
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise UnsafePathError(repr(rel), "file name is not valid UTF-8") from None
            if "\\" in rel:
                raise UnsafePathError(rel, "backslash in a file name is ambiguous across systems")
            target = path
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise UnsafePathError(rel, "symlink points outside the folder")
            try:
                mode = target.stat().st_mode
            except OSError as exc:
                raise UnsafePathError(rel, f"cannot stat: {exc.strerror}") from None
            if not stat.S_ISREG(mode):
                raise UnsafePathError(rel, "not a regular file")
            found.append((rel, target))
    found.sort(key=lambda item: item[0])
    return found
