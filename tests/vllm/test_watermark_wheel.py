"""The ``tiergate-watermark`` distribution: built from this checkout, numpy its only dependency,
installable into vLLM's environment without changing it, and the published vectors pass
through the plugin inside that environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.vllm.conftest import ROOT

pytestmark = pytest.mark.slow


def _metadata(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode().splitlines()


def test_wheel_holds_the_watermark_package_and_needs_only_numpy(watermark_wheel: Path) -> None:
    with zipfile.ZipFile(watermark_wheel) as archive:
        names = archive.namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"watermark", "tiergate_watermark-0.1.0.dist-info"}, top
    assert "watermark/vectors/tg-kgw-v1.json" in names
    assert "watermark/vllm_plugin.py" in names
    assert "watermark/py.typed" in names
    lines = _metadata(watermark_wheel)
    requires = [line.split(": ", 1)[1] for line in lines if line.startswith("Requires-Dist")]
    plain = [r for r in requires if "extra ==" not in r]
    assert plain == ["numpy>=1.26"], requires
    assert not any(dep in r for r in requires for dep in ("fastapi", "transformers", "sqlmodel"))


def test_every_watermark_module_is_in_the_wheel(watermark_wheel: Path) -> None:
    """A new module under watermark/ must not be forgotten by the packaging."""
    with zipfile.ZipFile(watermark_wheel) as archive:
        names = set(archive.namelist())
    for path in (ROOT / "watermark").rglob("*.py"):
        assert path.relative_to(ROOT).as_posix() in names, path


def test_wheel_installs_into_the_vllm_env_without_changing_it(
    engine_python: Path, watermark_wheel: Path
) -> None:
    report = subprocess.run(
        [str(engine_python), "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
         str(watermark_wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    installs = {i["metadata"]["name"] for i in json.loads(report.stdout)["install"]}
    # Nothing of vLLM's environment moves: numpy, its one dependency, is satisfied as it is.
    assert installs <= {"tiergate-watermark"}, installs


def test_detector_only_install_is_light(watermark_wheel: Path, tmp_path: Path) -> None:
    """The wheel with its dependencies on a bare interpreter: detection works, and neither
    torch nor anything of the gateway came along."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(site), str(watermark_wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    code = (
        "import sys, importlib.util\n"
        "from watermark import WatermarkConfig, WatermarkKey, detect\n"
        "key = WatermarkKey(bytes(32))\n"
        "config = WatermarkConfig.create(key, 1000)\n"
        "result = detect(list(range(300)), config, key)\n"
        "assert 0 < result.p_value <= 1\n"
        "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'sqlmodel', 'gateway')\n"
        "         if m in sys.modules or importlib.util.find_spec(m)]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    # -S: no site-packages; only the stdlib and what the wheel pulled in are importable.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, cwd=tmp_path,
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.strip() == "ok"


def test_published_vectors_pass_inside_the_vllm_env(engine_python: Path, plugin_site: Path) -> None:
    """vLLM's own SamplingParams and BatchUpdate through the installed plugin class."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": str(plugin_site),
    }
    out = subprocess.run(
        [str(engine_python), str(Path(__file__).with_name("vectors_in_vllm.py"))],
        env=env, cwd=plugin_site, check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failures"] == []
    assert result["checked"] == 360
    assert result["watermark_file"].startswith(str(plugin_site))


def test_a_key_for_another_vocabulary_stops_the_engine_at_start(
    engine_python: Path, plugin_site: Path, tmp_path: Path
) -> None:
    """Biasing the wrong columns would watermark nothing detectable: refuse to start."""
    from watermark.config import WatermarkConfig
    from watermark.keys import WatermarkKey
    from watermark.keyset import KeySetEntry, WatermarkKeySet, write_keyset

    key = WatermarkKey(bytes(range(32)))
    entry = KeySetEntry(key, WatermarkConfig.create(key, 999))
    write_keyset(tmp_path / "keys.json", WatermarkKeySet([entry]))
    code = (
        "import torch\n"
        "from types import SimpleNamespace as NS\n"
        "from watermark.errors import WatermarkKeyError\n"
        "from watermark.vllm_plugin import TiergateWatermarkLogitsProcessor as P\n"
        "config = NS(model_config=NS(get_vocab_size=lambda: 1024))\n"
        "try:\n"
        "    P(config, torch.device('cpu'), False)\n"
        "except WatermarkKeyError as exc:\n"
        "    print(exc.code, exc.message)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": str(plugin_site),
        "TIERGATE_WATERMARK_KEYSET": str(tmp_path / "keys.json"),
    }
    out = subprocess.run(
        [str(engine_python), "-c", code], env=env, cwd=tmp_path,
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.stdout.startswith("watermark_key_invalid"), out.stdout
    assert "999 tokens; this model has 1024" in out.stdout
