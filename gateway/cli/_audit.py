"""What the offline audit commands share (`tiergate log`, `tiergate auditor`): the failure
they print, bounded reads of files the user names, and the log's verifier key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from licensing.tlog.note import Verifier

__all__ = ["MAX_FILE_BYTES", "AuditFailed", "read_bounded", "verifier_of"]

MAX_FILE_BYTES = 4 * 1024 * 1024


class AuditFailed(click.ClickException):
    """A check failed: printed as one line, exit status 1."""

    exit_code = 1

    def format_message(self) -> str:
        return f"FAIL: {self.message}"


def read_bounded(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        # A path the user typed: their mistake, said plainly (not an internal error).
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from None
    if len(data) > MAX_FILE_BYTES:
        raise click.UsageError(f"{what} {path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def verifier_of(vkey: str) -> Verifier:
    from licensing.errors import TransparencyLogError
    from licensing.tlog.note import Verifier

    try:
        return Verifier.from_vkey(vkey.strip())
    except TransparencyLogError as exc:
        raise click.BadParameter(f"not a note verifier key: {exc}") from None
