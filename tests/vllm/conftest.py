"""A real vLLM server with the watermark plugin, started once per module from the vLLM env.

The engine's environment is its own venv (``make vllm-env``; ``TIERGATE_VLLM_ENV`` names
another). Without it these tests skip, unless ``TIERGATE_REQUIRE_VLLM=1`` (CI), which makes
them fail instead. The plugin reaches the engine as the ``tiergate-watermark`` wheel built
from this checkout and installed into a scratch directory on the engine's ``PYTHONPATH``:
nothing else of this repository is importable there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from watermark.config import PayloadSettings, WatermarkConfig
from watermark.keys import WatermarkKey
from watermark.keyset import KeySetEntry, WatermarkKeySet, write_keyset

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("TIERGATE_REQUIRE_VLLM") == "1"
PLUGIN = "watermark.vllm_plugin:TiergateWatermarkLogitsProcessor"
VOCAB = 1024
# A KV cache of one longest request (16 blocks of 32 tokens = max-model-len 512, plus the
# block vLLM keeps back), so that concurrent requests get preempted and recomputed.
KV_BLOCKS = 17


def vllm_python() -> Path:
    env = Path(os.environ.get("TIERGATE_VLLM_ENV") or ROOT / ".venv-vllm")
    python = env / "bin" / "python"
    if not python.exists():
        if REQUIRED:
            pytest.fail(f"TIERGATE_REQUIRE_VLLM=1 but there is no vLLM env at {env}")
        pytest.skip(f"no vLLM env at {env} (make vllm-env, or set TIERGATE_VLLM_ENV)")
    return python


@pytest.fixture(scope="session")
def engine_python() -> Path:
    return vllm_python()


@pytest.fixture(scope="session")
def watermark_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        from build_watermark_wheel import build_wheel
    finally:
        sys.path.pop(0)
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def plugin_site(
    engine_python: Path, watermark_wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The wheel installed (by the engine env's pip) into a directory of its own."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            str(engine_python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(watermark_wheel),
        ],
        check=True,
        timeout=300,
    )
    return site


@dataclass(frozen=True)
class Keys:
    """The engine's key set: the gateway's scheme, plus two strong keys for exact checks."""

    gateway: KeySetEntry  # h=1, left-seeded, 20-bit payload, delta 2 (gateway defaults)
    strong_left: KeySetEntry  # h=2, left-seeded, payload, delta 30: greedy follows the mask
    strong_self: KeySetEntry  # h=3, self-seeded, zero-bit gamma 0.5, delta 30
    keyset: WatermarkKeySet


def _keys() -> Keys:
    def entry(seed: int, **kwargs: object) -> KeySetEntry:
        key = WatermarkKey(bytes([seed]) * 32)
        return KeySetEntry(key, WatermarkConfig.create(key, VOCAB, **kwargs))  # type: ignore[arg-type]

    gateway = entry(1, delta=2.0, payload=PayloadSettings(payload_bits=20))
    left = entry(2, delta=30.0, context_width=2, payload=PayloadSettings(payload_bits=20))
    self_seeded = entry(3, gamma=0.5, delta=30.0, context_width=3, self_seeded=True)
    return Keys(gateway, left, self_seeded, WatermarkKeySet([gateway, left, self_seeded]))


@pytest.fixture(scope="session")
def keys() -> Keys:
    return _keys()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained tiny Llama of the generation tests, allowed 512 positions (RoPE: the
    limit is only a config field) so that 200-token completions fit."""
    from release.testing import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("model") / "tiny", train_steps=30)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 512
    (path / "config.json").write_text(json.dumps(config))
    return path


@dataclass(frozen=True)
class Server:
    base_url: str
    model_dir: Path
    keys: Keys
    log: Path


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"vLLM not ready after {limit:.0f} s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def launch_vllm(
    engine_python: Path,
    plugin_site: Path,
    model: Path,
    keyset: WatermarkKeySet,
    scratch: Path,
    *,
    served_model_name: str = "tiny",
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[tuple[str, Path]]:
    """A vLLM OpenAI server with the plugin and ``keyset``: (base URL, log file)."""
    keyset_path = scratch / "keys.json"
    write_keyset(keyset_path, keyset)
    port = port or free_port()
    log = scratch / "vllm.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": str(plugin_site),
        "TIERGATE_WATERMARK_KEYSET": str(keyset_path),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_USE_V2_MODEL_RUNNER": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    # `vllm serve` needs the "vllm" distribution's metadata, which vllm-cpu lacks: the
    # launcher module is the same server.
    command = [
        str(engine_python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", served_model_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--seed", "0",
        "--max-model-len", "512", "--max-num-seqs", "16",
        "--logits-processors", PLUGIN, *extra_args,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=scratch,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log, limit=900)
        yield url, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture(scope="module")
def vllm_server(
    engine_python: Path,
    plugin_site: Path,
    tiny_model: Path,
    keys: Keys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    scratch = tmp_path_factory.mktemp("engine")
    extra = (
        "--block-size", "32", "--num-gpu-blocks-override", str(KV_BLOCKS),
        "--enable-prefix-caching",
    )  # fmt: skip
    with launch_vllm(
        engine_python, plugin_site, tiny_model, keys.keyset, scratch, extra_args=extra
    ) as (url, log):
        yield Server(url, tiny_model, keys, log)
