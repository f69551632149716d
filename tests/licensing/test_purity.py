from __future__ import annotations

import subprocess
import sys

MODULES = [
    "licensing.canonical",
    "licensing.keys",
    "licensing.dsse",
    "licensing.intoto",
    "licensing.sigstore_bundle",
    "licensing.statements",
]
FORBIDDEN = (
    "gateway",
    "release",
    "watermark",
    "fastapi",
    "sqlmodel",
    "sqlalchemy",
    "model_signing",
)


def test_licensing_imports_no_other_part() -> None:
    code = (
        f"import sys\nfor m in {MODULES!r}: __import__(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_public_modules_declare_all() -> None:
    import importlib

    for name in MODULES:
        module = importlib.import_module(name)
        exported = module.__all__
        assert exported, name
        for symbol in exported:
            assert hasattr(module, symbol), f"{name}.{symbol}"
