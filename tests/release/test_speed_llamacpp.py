"""A GGUF artifact's speed record is measured in llama.cpp itself, against an f16 GGUF of
the open tier in the same run, and signed (shape only: figures are wall-clock facts).

Skips without ``llama-cpp-python`` (``make llamacpp``) unless ``TIERGATE_REQUIRE_LLAMACPP=1``
(CI), which makes it fail instead, like ``test_gguf_llamacpp.py``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from licensing.keys import PrivateKey
from release.build import BuildOptions, build_release
from release.engine_records import measurements_by_tier

REQUIRED = os.environ.get("TIERGATE_REQUIRE_LLAMACPP") == "1"


def test_a_gguf_build_signs_a_llamacpp_speed_record(tiny_llama: Path, tmp_path: Path) -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        if REQUIRED:
            pytest.fail(f"TIERGATE_REQUIRE_LLAMACPP=1 but llama_cpp does not import: {exc}")
        pytest.skip(f"llama-cpp-python is not installed (make llamacpp): {exc}")
    options = BuildOptions(
        repo_id="acme/tiny", version="1.0.0", optimize=("gguf-q8_0",), measure_speed=True,
        speed_tokens=4,
    )  # fmt: skip
    built = build_release(
        tiny_llama, tmp_path / "rel", key=PrivateKey.generate(), options=options,
        now=datetime.now(UTC), show_progress=False,
    )  # fmt: skip
    speed = measurements_by_tier(built.statement.measurements)["optimized"]["speed"]
    assert speed["status"] == "measured", speed
    assert speed["engine"] == "llama.cpp"
    assert speed["open_dtype"] == "f16"
    assert speed["batch_sizes"] == "1,8"
    for batch in (1, 8):
        assert float(speed[f"b{batch}.tokens_per_s"]) > 0
        assert float(speed[f"b{batch}.ratio"]) > 0
    assert float(speed["ceiling_ratio"]) > 1  # q8_0 is smaller than 16-bit
    card = (tmp_path / "rel" / "optimized" / "README.md").read_text()
    assert "llama.cpp" in card.split("## Speed and engine fidelity", 1)[1].split("\n## ", 1)[0]
