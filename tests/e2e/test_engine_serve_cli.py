"""`tiergate engine serve` against a real gateway, with a fake engine Python (no vLLM here).

The fake answers the engine probe like a vLLM environment with the plugin, and exits when
asked to serve; `--dry-run` stops before that. The vLLM-backed run is
tests/vllm/test_engine_serve.py.
"""

from __future__ import annotations

import json
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.cli._engine import (
    PLUGIN,
    EngineTierUnsupported,
    check_loadable,
    default_dtype,
    parse_engine_model,
)
from gateway.cli.main import cli
from gateway.db.models import LogEntry
from tests.conftest import Account, LiveServer
from tests.gateway.download_fixtures import BuiltRelease, publish
from tests.gateway.generation_fixtures import MODEL, generation_release  # noqa: F401
from watermark.keyset import load_keyset

pytestmark = pytest.mark.e2e


def fake_engine_python(folder: Path, *, vllm: bool = True, plugin: bool = True) -> Path:
    """A `python` that answers the probe as told and, asked to serve, exits with status 3."""
    folder.mkdir(parents=True, exist_ok=True)
    error = None if plugin else "ModuleNotFoundError"
    version = "0.32.0" if vllm else None
    probe = json.dumps({"vllm": version, "plugin": plugin, "plugin_error": error})
    script = folder / "python"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then echo \'{probe}\'; exit 0; fi\n'
        f'echo "$@" > "{folder}/served-args"\n'
        "exit 3\n"
    )
    script.chmod(0o755)
    return script


def _serve(server: LiveServer, account: Account, *args: str) -> Any:
    return CliRunner().invoke(
        cli,
        ["engine", "serve", *args],
        env={"TIERGATE_GATEWAY": server.url, "TIERGATE_TOKEN": account.token},
    )


def _said(result: Any) -> str:
    return str(result.output) + str(result.exception or "")


def _code(result: Any) -> str | None:
    return getattr(result.exception, "code", None)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_publisher_plans_an_engine_for_a_verified_tier(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    engine: Engine,
    tmp_path: Path,
) -> None:
    publisher = make_account("pat", "publisher", org="acme")
    dev = make_account("dev")
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        publish(generation_release, http, publisher)
    python = fake_engine_python(tmp_path / "engine-env")
    cache = tmp_path / "cache"
    common = ["--port", "8123", "--engine-python", str(python), "--cache-dir", str(cache)]

    result = _serve(live_server, publisher, f"{MODEL}:open", *common, "--dry-run", "--json",
                    "--", "--enforce-eager")  # fmt: skip
    assert result.exit_code == 0, _said(result)
    plan = json.loads(result.output)
    assert plan["started"] is False
    assert plan["verified"] is True
    model_dir = Path(plan["model_dir"])
    assert (model_dir / "model.sig").is_file()
    assert (model_dir / "config.json").is_file()
    command = plan["command"]
    assert command[:3] == [str(python), "-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == str(model_dir)
    assert command[command.index("--logits-processors") + 1] == PLUGIN
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--dtype") + 1] == "auto"  # the open tier is not quantized
    assert command[command.index("--served-model-name") + 1] == f"{MODEL}:open"
    assert command[-1] == "--enforce-eager"
    # The key set: a 0600 file in a 0700 folder, named to the engine by path only.
    keyset_file = Path(plan["keyset_file"])
    assert plan["env"]["TIERGATE_WATERMARK_KEYSET"] == str(keyset_file)
    assert stat.S_IMODE(keyset_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(keyset_file.parent.stat().st_mode) == 0o700
    keyset = load_keyset(keyset_file)
    (entry,) = list(keyset)
    assert entry.key.key_id == plan["key_id"]
    secret = entry.key.to_hex()
    assert secret not in result.output
    assert all(secret not in value for value in plan["env"].values())
    # The gateway's engines file entry (the engine seam's contract).
    toml = tomllib.loads(plan["engines_toml"])
    assert toml == {"engine": [{"model": f"{MODEL}:open", "urls": ["http://127.0.0.1:8123"]}]}

    # The export is on the record, and the key is the one the gateway then serves with: a
    # call through the gateway's own engine uses the same key id and records the same config.
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        made = http.post(
            "/v1/completions",
            json={"model": f"{MODEL}:open", "prompt": "The release", "max_tokens": 8},
            headers=dev.headers,
        )
    assert made.status_code == 200, made.text
    assert made.json()["tiergate"]["watermark_key_id"] == entry.key.key_id
    with Session(engine) as session:
        exports = session.exec(
            select(LogEntry).where(LogEntry.action == "watermark.key_exported")
        ).all()
        calls = session.exec(
            select(LogEntry).where(LogEntry.action == "generation.completed")
        ).all()
    assert [json.loads(e.entry)["fields"] for e in exports] == [{"key_id": entry.key.key_id}]
    assert exports[0].idx == plan["key_log_index"]
    assert secret not in exports[0].entry
    logged = json.loads(json.loads(calls[-1].entry)["fields"]["watermark"]["config"])
    assert logged == entry.config.to_dict()

    # A cached copy is re-verified on every start: a changed file is fetched again.
    config_file = model_dir / "config.json"
    original = config_file.read_bytes()
    config_file.write_bytes(original.replace(b"{", b"{ ", 1))
    again = _serve(live_server, publisher, f"{MODEL}:open", *common, "--dry-run")
    assert again.exit_code == 0, _said(again)
    assert config_file.read_bytes() == original
    assert "[[engine]]" in again.output
    assert "command (not started)" in again.output
    assert secret not in again.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refusals_come_before_anything_starts(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    from licensing.keys import PrivateKey

    publisher = make_account("pat", "publisher", org="acme")
    dev = make_account("dev")
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        publish(generation_release, http, publisher)
    python = fake_engine_python(tmp_path / "ok")

    runs = iter(range(100))

    def serve(
        account: Account, model: str, *extra: str, engine_python: Path = python, keyed: bool = False
    ) -> Any:
        cache = tmp_path / f"cache-{next(runs)}"
        result = _serve(live_server, account, model, "--port", "8124", "--engine-python",
                        str(engine_python), "--cache-dir", str(cache), *extra)  # fmt: skip
        assert result.exit_code != 0
        keys = cache / "keys"
        if not keyed:
            assert not keys.exists() or not any(keys.iterdir()), "a refused run wrote a key set"
        return result

    # The engine's environment is checked before anything is downloaded.
    missing = serve(publisher, f"{MODEL}:open", engine_python=tmp_path / "nope" / "python")
    assert _code(missing) == "engine_python_missing"
    no_plugin = serve(publisher, f"{MODEL}:open",
                      engine_python=fake_engine_python(tmp_path / "np", plugin=False))  # fmt: skip
    assert _code(no_plugin) == "engine_python_missing"
    assert "tiergate-watermark" in _said(no_plugin)
    no_vllm = serve(publisher, f"{MODEL}:open",
                    engine_python=fake_engine_python(tmp_path / "nv", vllm=False))  # fmt: skip
    assert "has no vLLM" in _said(no_vllm)

    # No grant: the gated tier is not even downloaded; the open tier downloads, but only the
    # releasing org's publishers get its key.
    gated = serve(dev, f"{MODEL}:optimized")
    assert _code(gated) in ("grant_required", "gated_repo")
    assert "tiergate access request" in _said(gated)
    not_theirs = serve(dev, f"{MODEL}:open")
    assert "HTTP 403" in _said(not_theirs)

    # A signature that does not verify against the pinned publisher key: refused, no key.
    other = tmp_path / "other.pem"
    other.write_bytes(PrivateKey.generate().public_key.to_pem())
    unsigned = serve(publisher, f"{MODEL}:open", "--key", str(other))
    assert _code(unsigned) == "tier_verification_failed"

    # Arguments the command owns cannot be overridden after `--`; the version is required.
    owned = serve(publisher, f"{MODEL}:open", "--", "--logits-processors", "x:Y")
    assert _code(owned) == "engine_setup_failed"
    unpinned = serve(publisher, "acme/chatty")
    assert "ORG/NAME@VERSION" in _said(unpinned)

    # Without --dry-run the engine is started; one that dies before /health is reported.
    died = serve(publisher, f"{MODEL}:open", keyed=True)
    assert _code(died) == "engine_start_failed"
    assert "status 3" in _said(died)
    assert "--logits-processors " + PLUGIN in (tmp_path / "ok" / "served-args").read_text()


def test_gguf_tiers_go_to_llama_cpp_and_quantized_tiers_run_in_bfloat16(tmp_path: Path) -> None:
    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "model-q4_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(EngineTierUnsupported, match=r"llama\.cpp"):
        check_loadable(gguf, "acme/tiny@1.0.0:optimized_gguf_q4_0")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineTierUnsupported, match="safetensors"):
        check_loadable(empty, "acme/tiny@1.0.0:open")

    ct = tmp_path / "ct"
    ct.mkdir()
    (ct / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "compressed-tensors"}})
    )
    assert default_dtype(ct) == "bfloat16"
    (ct / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
    assert default_dtype(ct) == "auto"

    assert parse_engine_model("acme/tiny@1.0.0") == ("acme/tiny", "1.0.0", "open")
    assert parse_engine_model("acme/tiny@1.0.0:optimized_int4") == (
        "acme/tiny", "1.0.0", "optimized_int4",
    )  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_keyset_for_an_engine_started_elsewhere(
    generation_release: BuiltRelease,  # noqa: F811
    live_server: LiveServer,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    publisher = make_account("pat", "publisher", org="acme")
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        publish(generation_release, http, publisher)
    out = tmp_path / "engine-keys.json"

    def keyset(*extra: str) -> Any:
        return CliRunner().invoke(
            cli,
            ["engine", "keyset", f"{MODEL}:optimized", "--out", str(out), *extra],
            env={"TIERGATE_GATEWAY": live_server.url, "TIERGATE_TOKEN": publisher.token},
        )

    made = keyset()
    assert made.exit_code == 0, _said(made)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    (entry,) = list(load_keyset(out))
    assert entry.key.key_id in made.output
    assert entry.key.to_hex() not in made.output
    # The optimized tier has its own key (keys are per release tier).
    assert entry.config.vocab_size > 0
    again = keyset()
    assert again.exit_code != 0
    assert "--force" in _said(again)
    assert keyset("--force").exit_code == 0
    assert [e.key.key_id for e in load_keyset(out)] == [entry.key.key_id]
