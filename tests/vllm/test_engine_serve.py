"""`tiergate engine serve` starts a real vLLM on a published tier; its text carries the tier's key.

The whole publisher path: publish a release to a live gateway, run the command (a subprocess,
as a publisher runs it) with the vLLM environment and the plugin wheel built from this
checkout, read the plan it prints once vLLM answers /health, then ask the engine for a tagged
completion: it is watermarked with the key of the key set, and the gateway's own detector
(which knows the key from the registration the command made) says so too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Account, LiveServer, free_port
from tests.gateway.download_fixtures import BuiltRelease, publish, sign_release
from tests.vllm.conftest import ROOT
from watermark.detector import detect
from watermark.keyset import load_keyset

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
MODEL = "acme/engine@1.0.0:open"


@pytest.fixture(scope="module")
def engine_release(tmp_path_factory: pytest.TempPathFactory) -> BuiltRelease:
    """The trained tiny Llama, allowed 512 positions so that 200-token completions fit."""
    from release.testing import build_tiny_model

    root = tmp_path_factory.mktemp("engine-release")
    model = build_tiny_model(root / "model", train_steps=30)
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 512
    (model / "config.json").write_text(json.dumps(config))
    return sign_release(model, root / "out", "acme/engine", "1.0.0")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cli_process(
    engine_python: Path,  # first: skips (or fails under CI) before anything is built
    plugin_site: Path,
    engine_release: BuiltRelease,
    live_server: LiveServer,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> Iterator[tuple[subprocess.Popen[str], Account, Path]]:
    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        publish(engine_release, http, publisher)
    log = tmp_path / "engine.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": str(ROOT),
        "TIERGATE_GATEWAY": live_server.url,
        "TIERGATE_TOKEN": publisher.token,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_USE_V2_MODEL_RUNNER": "0",
    }
    command = [
        sys.executable, "-m", "gateway.cli.main", "engine", "serve", MODEL,
        "--port", str(free_port()), "--engine-python", str(engine_python),
        "--engine-pythonpath", str(plugin_site), "--cache-dir", str(tmp_path / "cache"),
        "--dtype", "float32", "--max-model-len", "512", "--json",
        "--", "--enforce-eager", "--seed", "0", "--max-num-seqs", "4",
    ]  # fmt: skip
    with log.open("w") as err:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
            start_new_session=True,
        )  # fmt: skip
    engines: list[int] = []
    try:
        yield process, publisher, log
    finally:
        engines += _children(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in engines:  # only if the command failed to stop its engine
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_engine_serve_runs_vllm_that_watermarks_with_the_tiers_key(
    cli_process: tuple[subprocess.Popen[str], Account, Path], live_server: LiveServer
) -> None:
    process, publisher, log = cli_process
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once vLLM answers /health
    assert line, f"engine serve exited ({process.poll()}):\n{log.read_text()[-4000:]}"
    plan = json.loads(line)
    assert plan["started"] is True
    (vllm_pid,) = _children(process.pid)
    entry = next(iter(load_keyset(plan["keyset_file"])))
    assert entry.key.key_id == plan["key_id"]
    assert entry.key.to_hex() not in log.read_text()  # not in vLLM's log either

    def complete(xargs: dict[str, object] | None) -> list[int]:
        body: dict[str, object] = {
            "model": plan["served_model_name"], "prompt": "The release gateway",
            "max_tokens": 200, "temperature": 1.0, "seed": 7, "ignore_eos": True,
            "return_token_ids": True,
        }  # fmt: skip
        if xargs is not None:
            body["vllm_xargs"] = xargs
        answer = httpx.post(f"{plan['url']}/v1/completions", json=body, timeout=600)
        assert answer.status_code == 200, answer.text
        return [int(t) for t in answer.json()["choices"][0]["token_ids"]]

    tagged = complete({"tiergate_key_id": entry.key.key_id, "tiergate_payload": 4242})
    result = detect(tagged, entry.config, entry.key)
    assert result.p_value < 1e-6, result
    plain = complete(None)
    assert detect(plain, entry.config, entry.key).p_value > 1e-6  # false failure: 1e-6

    # The gateway's detector knows this key (registered by the command) with the same config.
    verdict = httpx.post(
        f"{live_server.url}/v1/watermark/detect",
        json={"token_ids": tagged, "model": MODEL},
        headers={"Authorization": f"Bearer {publisher.token}"},
        timeout=120,
    )
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["watermarked"] is True
    assert verdict.json()["watermark_key_id"] == entry.key.key_id

    # SIGTERM to the command stops the engine it started.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    assert not _alive(vllm_pid)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plan['url']}/health", timeout=5)
