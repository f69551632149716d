"""One marker and one registry of error codes: unique across the four parts, trees kept true."""

from __future__ import annotations

import gc
import importlib
import re
from pathlib import Path

import pytest

from gateway.errors import (
    PART_STATUS,
    PARTS,
    DuplicateErrorCode,
    ErrorCode,
    GatewayError,
    error_definitions,
    error_registry,
    error_roots,
    import_project_modules,
    iter_error_classes,
    status_of,
    title_of,
)
from gateway.tools.error_codes import main as error_codes_main
from gateway.tools.error_codes import render_table
from licensing.errors import AttestationTooLargeError, LicensingError
from release.errors import ReleaseError
from safety.errors import SafetyError
from watermark.errors import WatermarkError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry() -> dict[str, ErrorCode]:
    return error_registry()


def test_roots_are_the_five_parts() -> None:
    assert error_roots() == (
        GatewayError,
        ReleaseError,
        LicensingError,
        WatermarkError,
        SafetyError,
    )


def test_error_codes_are_unique_across_the_four_parts(registry: dict[str, ErrorCode]) -> None:
    import_project_modules()
    definitions = [d.code for d in error_definitions()]
    duplicates = sorted({c for c in definitions if definitions.count(c) > 1})
    assert duplicates == []
    origins = {entry.origin.split(".", 1)[0] for entry in registry.values()}
    assert set(PARTS) <= origins
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in registry)


def test_grant_required_and_attestation_too_large_have_one_definition(
    registry: dict[str, ErrorCode],
) -> None:
    """Regression: both codes were defined twice, with different titles (and statuses)."""
    import_project_modules()
    for code in ("grant_required", "attestation_too_large"):
        assert [d.origin for d in error_definitions() if d.code == code] == [registry[code].origin]
    assert registry["attestation_too_large"].status == 413
    assert registry["grant_required"].status == 403


def test_a_duplicate_code_is_refused() -> None:
    class ShadowsNotFound(GatewayError):
        code = "not_found"

    try:
        with pytest.raises(DuplicateErrorCode, match="not_found"):
            error_registry(import_all=False)
    finally:
        del ShadowsNotFound
        gc.collect()
    error_registry(import_all=False)


def test_every_class_code_is_in_the_registry(registry: dict[str, ErrorCode]) -> None:
    for cls in iter_error_classes():
        code = cls.__dict__.get("code")
        if isinstance(code, str):
            assert registry[code].origin == f"{cls.__module__}.{cls.__qualname__}"


def test_part_errors_get_statuses_and_titles(registry: dict[str, ErrorCode]) -> None:
    assert set(PART_STATUS) <= set(registry)
    assert status_of(AttestationTooLargeError) == 413
    assert status_of(ReleaseError) == 422
    assert title_of(AttestationTooLargeError) == "Attestation too large"


def test_docs_table_is_current() -> None:
    assert error_codes_main(["--check", str(REPO_ROOT / "docs" / "errors.md")]) == 0
    assert "`grant_required` | 403" in render_table()


def test_docs_check_fails_when_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "errors.md"
    stale.write_text("# Error codes\n")
    assert error_codes_main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert error_codes_main(["--write", str(stale)]) == 0
    assert error_codes_main(["--check", str(stale)]) == 0


# --- the exception trees drawn in each errors.py docstring -----------------------------------

_TREE_LINE = re.compile(
    r"^(?P<prefix>(?:[| ]   )*)(?:\+-- )?(?P<name>[A-Z]\w+)\s+"
    r"(?:(?P<status>\d{3})\s+)?(?P<code>[a-z][a-z0-9_]*)\b"
)


def _drawn_tree(module_name: str) -> dict[str, tuple[str | None, str, int | None]]:
    """name -> (parent name, code, status) as drawn in the module docstring's tree."""
    doc = importlib.import_module(module_name).__doc__ or ""
    block = doc.split("::\n", 1)[1]
    drawn: dict[str, tuple[str | None, str, int | None]] = {}
    stack: list[str] = []
    for raw in block.splitlines()[1:]:
        if not raw.strip():
            break
        line = raw[4:]
        match = _TREE_LINE.match(line)
        if match is None:
            continue  # a continuation line of the previous entry's description
        depth = len(match["prefix"]) // 4 + (1 if "+-- " in line[: len(match["prefix"]) + 4] else 0)
        stack[depth:] = [match["name"]]
        parent = stack[depth - 1] if depth else None
        status = int(match["status"]) if match["status"] else None
        drawn[match["name"]] = (parent, match["code"], status)
    return drawn


@pytest.mark.parametrize(
    ("module_name", "root", "whole_part"),
    [
        ("gateway.errors", GatewayError, False),
        ("release.errors", ReleaseError, True),
        ("licensing.errors", LicensingError, True),
        ("watermark.errors", WatermarkError, True),
    ],
)
def test_docstring_tree_matches_the_classes(
    module_name: str, root: type[Exception], whole_part: bool
) -> None:
    """Each errors.py draws its tree; every class is drawn under its real parent, code right.

    The pure parts draw every class of the part; the gateway draws its own module's classes
    (services keep theirs next to their rules; docs/errors.md lists them all).
    """
    import_project_modules([module_name.split(".", 1)[0]])
    part = module_name.split(".", 1)[0]

    def drawn_here(cls: type[BaseException]) -> bool:
        if whole_part:
            return cls.__module__.split(".", 1)[0] == part
        return cls.__module__ == module_name

    classes = {
        cls.__name__: cls
        for cls in iter_error_classes([root])
        if drawn_here(cls) and not cls.__name__.startswith("_")
    }
    drawn = _drawn_tree(module_name)
    assert sorted(drawn) == sorted(classes)
    for name, (parent, code, status) in drawn.items():
        cls = classes[name]
        assert code == cls.__dict__["code"], name
        if parent is not None:
            assert cls.__bases__[0].__name__ == parent, name
        if status is not None:
            assert status == status_of(cls), name
