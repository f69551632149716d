"""Build the ``tiergate-watermark`` wheel from this checkout (``build_watermark_wheel.py OUT``).

The package and its pyproject are copied to a scratch tree first, so a build leaves nothing
(``build/``, ``*.egg-info``) in the checkout; prints the wheel's path. Needs setuptools and
wheel in the running interpreter (no build isolation: CI and engines build offline).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out_dir: Path, python: str = sys.executable) -> Path:
    """Build the wheel into ``out_dir`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiergate-watermark-build-") as scratch:
        tree = Path(scratch)
        shutil.copytree(
            ROOT / "watermark",
            tree / "watermark",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        (tree / "packaging" / "watermark").mkdir(parents=True)
        shutil.copy(
            ROOT / "packaging" / "watermark" / "pyproject.toml", tree / "packaging" / "watermark"
        )
        before = set(out_dir.glob("tiergate_watermark-*.whl"))
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out_dir),
                str(tree / "packaging" / "watermark"),
            ],
            check=True,
        )
    built = sorted(out_dir.glob("tiergate_watermark-*.whl"), key=lambda p: p.stat().st_mtime)
    return built[-1] if built else next(iter(before))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: build_watermark_wheel.py OUT_DIR")
    print(build_wheel(Path(sys.argv[1])))
