"""The import-layer check: the real tree passes, and every import form of a violation is caught."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.tools.check_layers import PARTS, find_violations, main

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for part in PARTS:
        (root / part).mkdir(parents=True, exist_ok=True)
        (root / part / "__init__.py").touch()
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def test_real_tree_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(REPO_ROOT)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("check_layers: OK")
    assert out.count("\n") == 1


def test_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.tools.check_layers", str(REPO_ROOT)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_clean_synthetic_tree_passes(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            # release may build on the other parts; only the web stack is off limits.
            "release/build.py": "import numpy\nfrom licensing import x\nimport watermark\n",
            "licensing/sub/a.py": "from . import b\nfrom ..errors import LicensingError\n",
            "watermark/x.py": "from __future__ import annotations\nimport importlib\n",
        },
    )
    violations, checked = find_violations(tmp_path)
    assert violations == []
    assert checked == 7  # three files + one __init__.py per part


@pytest.mark.parametrize(
    ("name", "source", "imported"),
    [
        ("release/a.py", "import fastapi", "fastapi"),
        ("release/a.py", "import sqlalchemy.orm as orm", "sqlalchemy"),
        ("release/a.py", "from gateway.storage import LocalBlobStore", "gateway"),
        ("release/a.py", "from starlette.responses import Response", "starlette"),
        ("release/a.py", "def f():\n    import uvicorn\n", "uvicorn"),
        (
            "release/a.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlmodel\n",
            "sqlmodel",
        ),
        ("release/a.py", "import importlib\nimportlib.import_module('gateway.app')", "gateway"),
        ("release/a.py", "__import__('fastapi')", "fastapi"),
        ("watermark/a.py", "import release.manifest", "release"),
        ("watermark/a.py", "from licensing import canonical", "licensing"),
        ("watermark/deep/a.py", "from ... import release", "release"),
        ("watermark/a.py", "from ..release import manifest", "release"),
        (
            "watermark/a.py",
            "class C:\n    def m(self):\n        from gateway import errors\n",
            "gateway",
        ),
        ("licensing/a.py", "import watermark", "watermark"),
        ("licensing/a.py", "from release.hashing import sha256_file", "release"),
        ("licensing/tlog/a.py", "import os, json, fastapi", "fastapi"),
        # safety is a leaf: the gateway hands it a verified guard model, never the reverse.
        ("safety/a.py", "from gateway.services import releases", "gateway"),
        ("safety/checks/a.py", "import watermark", "watermark"),
        ("safety/a.py", "from release.verify import verify", "release"),
    ],
)
def test_violations_are_caught(tmp_path: Path, name: str, source: str, imported: str) -> None:
    make_tree(tmp_path, {name: source})
    violations, _ = find_violations(tmp_path)
    assert len(violations) == 1
    violation = violations[0]
    assert violation.path == Path(name)
    assert violation.imported.startswith(imported)
    assert str(violation).startswith(f"{name}:{violation.line}: ")
    assert imported in source.splitlines()[violation.line - 1]


def test_failure_lists_file_line_and_statement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_tree(
        tmp_path,
        {"watermark/detect.py": '"""Doc."""\n\nimport numpy\nfrom gateway.errors import X\n'},
    )
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out == (
        "watermark/detect.py:4: watermark must not import gateway: from gateway.errors import X\n"
    )


def test_unparseable_file_fails_closed(tmp_path: Path) -> None:
    make_tree(tmp_path, {"licensing/broken.py": "def (:\n"})
    violations, _ = find_violations(tmp_path)
    assert [v.imported for v in violations] == ["?"]


def test_missing_part_is_an_error_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "release").mkdir()
    assert main([str(tmp_path)]) == 2
    assert "licensing" in capsys.readouterr().err


def _gateway_tree(root: Path, files: dict[str, str]) -> Path:
    for package in ("gateway", "gateway/routes", "gateway/web", "gateway/cli",
                    "gateway/services", "gateway/generation"):  # fmt: skip
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").touch()
    return make_tree(root, files)


def test_gateway_contracts_are_enforced(tmp_path: Path) -> None:
    """Issue #15: rules drifted into drivers; the check keeps them in services."""
    from gateway.tools.check_layers import find_gateway_violations

    _gateway_tree(
        tmp_path,
        {
            "gateway/routes/a.py": "from gateway.routes.b import helper\n",  # route -> route
            "gateway/routes/b.py": "from gateway.routes._shared import x\n",  # plumbing: fine
            "gateway/routes/c.py": "from sqlmodel import Session, select\n",  # SQL in a driver
            "gateway/cli/tool.py": "from gateway.web import pages\n",  # CLI -> web
            "gateway/web/page.py": "import gateway.cli.tool\n",  # web -> CLI
            "gateway/services/s.py": "from gateway.routes import a\n",  # reaching back up
            "gateway/generation/g.py": "def f():\n    from gateway.services import s\n",
            "gateway/services/ok.py": "from sqlmodel import select\nfrom gateway.db import m\n",
            "gateway/web/render.py": "from gateway.web.sessions import x\n",  # plumbing: fine
        },
    )
    found = {(str(v.path), v.imported) for v in find_gateway_violations(tmp_path)[0]}
    assert found == {
        ("gateway/routes/a.py", "gateway.routes.b"),
        ("gateway/routes/c.py", "select"),
        ("gateway/cli/tool.py", "gateway.web"),
        ("gateway/web/page.py", "gateway.cli.tool"),
        ("gateway/services/s.py", "gateway.routes"),
        ("gateway/generation/g.py", "gateway.services"),
    }
