"""The vocabulary of a released model folder, defined once for every part that names it.

The signature file's name, one file entry (path, sha256, size) and the ``ORG/NAME`` rule are
shared by the publisher (``release``), the signed records (``licensing``) and the gateway;
they live here, in the leaf part that signs them, so each is one constant, one type, one rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from licensing._paths import check_relative_path
from licensing.canonical import MAX_SAFE_INTEGER, is_sha256_hex
from licensing.errors import TierFileInvalidError

__all__ = [
    "REPO_ID_PATTERN",
    "REPO_ID_RULE",
    "SIGNATURE_FILE",
    "TierFile",
    "is_repo_id",
    "split_repo_id",
]

SIGNATURE_FILE = "model.sig"
"""The detached model_signing bundle of a tier folder (``model_signing``'s default name).

It lives in the folder it signs, so no manifest lists it and no tier may contain another.
"""

# "ORG/NAME" as on the Hugging Face Hub: letters, digits, '.', '_', '-'; each part starts with
# a letter or digit (so no ".." and no hidden names), at most 96 characters.
REPO_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
REPO_ID_RULE = (
    "ORG/NAME, each part 1-96 letters, digits, '.', '_' or '-', starting with a letter or digit"
)


def is_repo_id(value: object) -> bool:
    """True when ``value`` is an ``ORG/NAME`` repository id."""
    return isinstance(value, str) and REPO_ID_PATTERN.fullmatch(value) is not None


def split_repo_id(repo_id: str) -> tuple[str, str] | None:
    """``(org, name)`` of a valid repository id, ``None`` otherwise (callers raise their error)."""
    if not is_repo_id(repo_id):
        return None
    org, _, name = repo_id.partition("/")
    return org, name


@dataclass(frozen=True, slots=True)
class TierFile:
    """One file of a tier: clean relative POSIX path, lowercase hex sha256, size in bytes.

    Used for tier manifests, release statements and model_signing bundles alike. Raises
    :class:`~licensing.errors.TierFileInvalidError`; parsers turn it into their own error.
    """

    path: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        check_relative_path(self.path, "file path", TierFileInvalidError)
        if not is_sha256_hex(self.sha256):
            raise TierFileInvalidError(f"{self.path}: sha256 must be 64 lowercase hex digits")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TierFileInvalidError(f"{self.path}: size must be an integer")
        if not 0 <= self.size <= MAX_SAFE_INTEGER:
            raise TierFileInvalidError(f"{self.path}: size out of range")
