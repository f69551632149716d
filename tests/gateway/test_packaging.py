"""Packaging: declared dependencies match the imports, extras keep installs light, Makefile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from gateway.tools.check_deps import PART_GROUPS, declared_groups, find_problems, main

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# What a detection-only (base) install must import without: the engine, the web stack, S3.
NOT_IN_BASE = (
    "torch",
    "transformers",
    "numba",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "pydantic",
    "click",
    "boto3",
    "joserfc",
    "authlib",
)


def test_real_tree_declares_every_import(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(REPO_ROOT)]) == 0
    assert capsys.readouterr().out.startswith("check_deps: OK")


def make_tree(root: Path, pyproject: str, files: dict[str, str]) -> Path:
    (root / "pyproject.toml").write_text(textwrap.dedent(pyproject))
    for part in PART_GROUPS:
        (root / part).mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (root / name).write_text(textwrap.dedent(source))
    return root


FAKE_DISTS = {
    "joserfc": ["joserfc"],
    "markupsafe": ["MarkupSafe"],
    "fastapi": ["fastapi"],
    "numpy": ["numpy"],
    "torch": ["torch"],
}


def test_undeclared_imports_fail(tmp_path: Path) -> None:
    """Regression: joserfc and markupsafe were imported by the gateway but never declared."""
    root = make_tree(
        tmp_path,
        """
        [project]
        name = "tiergate"
        dependencies = ["numpy>=1"]
        [project.optional-dependencies]
        server = ["fastapi"]
        """,
        {
            "gateway/oauth.py": "from joserfc import jwt\nimport fastapi\n",
            "gateway/web.py": "def f():\n    from markupsafe import Markup\n",
            "licensing/keys.py": "import numpy\n",
        },
    )
    problems, checked = find_problems(root, distributions=FAKE_DISTS)
    assert checked == 3
    assert [(str(p.path), p.module) for p in problems] == [
        ("gateway/oauth.py", "joserfc"),
        ("gateway/web.py", "markupsafe"),
    ]


def test_a_pure_part_may_not_lean_on_the_server_extra(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        """
        [project]
        name = "tiergate"
        dependencies = []
        [project.optional-dependencies]
        engine = ["torch"]
        server = ["fastapi"]
        dev = ["tiergate[server,engine]"]
        """,
        {
            "watermark/proc.py": "def f():\n    import torch\n",
            "licensing/bad.py": "import torch\n",
            "release/bad.py": "import fastapi\n",
            "tests/test_x.py": "import fastapi\nimport torch\n",
        },
    )
    problems, _ = find_problems(root, distributions=FAKE_DISTS)
    assert sorted((str(p.path), p.module) for p in problems) == [
        ("licensing/bad.py", "torch"),
        ("release/bad.py", "fastapi"),
    ]
    assert "[engine]" in str(problems[0])


def test_unknown_imports_are_not_waved_through(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        '[project]\nname = "tiergate"\ndependencies = []\n',
        {"gateway/x.py": "import not_installed_anywhere\n"},
    )
    problems, _ = find_problems(root, distributions=FAKE_DISTS)
    assert [p.module for p in problems] == ["not_installed_anywhere"]


def test_extras_resolve_self_references() -> None:
    groups = declared_groups(PYPROJECT)
    assert groups["torch"] == {"engine", "dev"}
    assert groups["fastapi"] == {"server", "dev"}
    assert groups["click"] == {"cli", "server", "dev"}
    assert groups["boto3"] == {"s3", "dev"}
    assert {"joserfc", "markupsafe"} <= set(groups)


def test_base_install_is_the_pure_libraries_needs() -> None:
    base = {name for name, groups in declared_groups(PYPROJECT).items() if "" in groups}
    assert base == {"numpy", "cryptography", "safetensors", "httpx", "pyyaml", "tqdm"}


def test_detection_works_without_engine_or_web_stack() -> None:
    """The pure parts import and detect with every non-base distribution made unimportable."""
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {NOT_IN_BASE!r}:
                    raise ImportError("blocked: " + name)
                return None

        sys.meta_path.insert(0, Block())
        import licensing.statements, licensing.sigstore_bundle, licensing.layout
        import release.manifest, release.verify, release.upload, release.model_card
        import watermark
        from watermark import WatermarkConfig, WatermarkKey, detect

        key = WatermarkKey(bytes(range(32)))
        config = WatermarkConfig.create(key, 1000, gamma=0.25, delta=2.0)
        result = detect(list(range(3, 300)), config, key)
        print("OK", result.tokens_scored > 0)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK True"


# --- Makefile ---------------------------------------------------------------------------------

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`make run` with a stand-in `tiergate` that prints the data dir it was given."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    fake = venv / "bin" / "tiergate"
    fake.write_text('#!/bin/sh\necho "data=$TIERGATE_DATA_DIR"\n')
    fake.chmod(0o755)
    (venv / ".installed-run").touch()  # newer than pyproject.toml: nothing to install
    clean = {k: v for k, v in os.environ.items() if k != "TIERGATE_DATA_DIR" and k != "MAKEFLAGS"}
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO_ROOT), "run", f"VENV={venv}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**clean, **(env or {})},
    )
    return done.stdout.strip()


@needs_make
def test_make_run_honours_tiergate_data_dir(tmp_path: Path) -> None:
    """Regression: `TIERGATE_DATA_DIR=/x make run` served from ./data anyway."""
    assert make_run(tmp_path, env={"TIERGATE_DATA_DIR": "/x"}) == "data=/x"
    assert make_run(tmp_path) == "data=./data"
    assert make_run(tmp_path, "DATA=/elsewhere") == "data=/elsewhere"


@needs_make
def test_make_run_installs_server_and_engine_only(tmp_path: Path) -> None:
    dry = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), "install-run", f"VENV={tmp_path / 'v'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "'.[server,engine]'" in dry
    assert "dev" not in dry
    test_dry = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), "test", f"VENV={tmp_path / 'v'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "'.[dev]'" in test_dry
    assert "gateway.tools.check_deps" in test_dry
