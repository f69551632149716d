"""The CLI's one error boundary: our errors as one line, anything else shown as the bug it is."""

from __future__ import annotations

import click
import pytest

from gateway.cli.main import COMMANDS, main
from gateway.errors import Conflict
from licensing.errors import KeyExistsError
from release.errors import ManifestInvalidError
from watermark.errors import InsufficientTextError

_RAISES: dict[str, BaseException] = {
    "value-error": ValueError("a bug deep in the code"),
    "os-error": FileNotFoundError(2, "No such file or directory", "/nonexistent/cache"),
    "gateway": Conflict("user 'bob' already exists"),
    "release": ManifestInvalidError("manifest is not JSON"),
    "licensing": KeyExistsError("k.pem exists"),
    "watermark": InsufficientTextError("no token has a full context"),
}


@click.command("boom")
@click.argument("kind")
@click.option("-v", "value", default=None, help="A subcommand's own -v: not the root's flag.")
def boom(kind: str, value: str | None) -> None:
    raise _RAISES[kind]


@pytest.fixture(autouse=True)
def boom_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMMANDS, "boom", (__name__, "boom", "Raise an exception."))


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["value-error", "os-error"])
def test_internal_bug_is_not_disguised_as_user_error(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: the old boundary tested `__module__.startswith("tiergate")` (never true),
    so any ValueError or OSError, bugs included, printed as a one-line user error."""
    status, err = run_main(capsys, "boom", kind)
    assert status == 2
    assert "Traceback (most recent call last)" in err
    assert f"internal error: {type(_RAISES[kind]).__name__}" in err
    assert "error [" not in err


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("gateway", "conflict"),
        ("release", "manifest_invalid"),
        ("licensing", "key_exists"),
        ("watermark", "watermark_text_too_short"),
    ],
)
def test_each_part_error_is_one_line(
    kind: str, code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run_main(capsys, "boom", kind)
    assert status == 1
    assert err == f"error [{code}]: {_RAISES[kind]}\n"


def test_verbose_adds_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run_main(capsys, "--verbose", "boom", "licensing")
    assert status == 1
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("error [key_exists]: k.pem exists")


def test_a_subcommands_own_v_is_not_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run_main(capsys, "boom", "watermark", "-v", "x")
    assert status == 1
    assert "Traceback" not in err
