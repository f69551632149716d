"""The installed ``tiergate-watermark`` wheel's Gumbel detector equals vLLM's, inside vLLM's env."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_wheel_detector_matches_vllms_prf_and_detector(
    engine_python: Path, plugin_site: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    out = subprocess.run(
        [str(engine_python), str(Path(__file__).with_name("gumbel_in_vllm.py"))],
        env=env, cwd=plugin_site, check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failures"] == []
    assert result["checked"] == 28
    assert result["file"].startswith(str(plugin_site))  # the wheel, not this checkout
