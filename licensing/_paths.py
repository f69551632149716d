"""Relative POSIX file paths inside a model folder: validation and the manifest sort order."""

from __future__ import annotations

from licensing._fields import ErrorType

MAX_PATH_CHARS = 1024


def check_relative_path(path: object, what: str, error: ErrorType) -> str:
    """Return ``path`` when it is a clean relative POSIX path, else raise ``error``.

    Clean means: no leading ``/``, no empty, ``.`` or ``..`` components, no backslashes and no
    control characters, so the same string names the same file on every platform and can never
    step outside the folder it is relative to.
    """
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise error(f"{what} must be a non-empty path of at most {MAX_PATH_CHARS} characters")
    if path.startswith("/") or "\\" in path or any(ord(c) < 0x20 or c == "\x7f" for c in path):
        raise error(f"{what} must be a relative POSIX path without control characters")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise error(f"{what} has an empty, '.' or '..' component")
    return path


def path_sort_key(path: str) -> tuple[str, ...]:
    """Order of ``pathlib.PurePosixPath`` (by components), which model_signing uses for resources.

    Plain string order differs: ``"a.txt" < "a/b"`` as strings, but ``a/b`` sorts first by parts.
    """
    return tuple(path.split("/"))
