"""The harness around ``bench/gateway_vllm_overhead.py``'s measurement: the signed tiny release
and the API tokens the gateway serves it with, the processes it starts (the gateway, a baseline
gateway at a git ref, vLLM or ``bench/fake_vllm_engine.py``, py-spy), each process tree's CPU
time from /proc, and the lines printed for each concurrency level."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

REPO = "bench/tiny"
TIER = f"{REPO}@1.0.0:open"


def build(root: Path) -> Path:
    from datetime import UTC, datetime

    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release
    from release.testing import build_tiny_model

    model = build_tiny_model(root / "model", train_steps=30)
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 512
    (model / "config.json").write_text(json.dumps(config))
    key = PrivateKey.generate()
    out = root / "out"
    options = BuildOptions(repo_id=REPO, version="1.0.0", approval=ApprovalPolicy())
    build_release(model, out, key=key, options=options, now=datetime.now(UTC), show_progress=False)
    (root / "pub.pem").write_bytes(key.public_key.to_pem())
    return out


def make_tokens(data: Path, database_url: str | None) -> tuple[str, str]:
    """A publisher's and a developer's API tokens, written straight into the database."""
    from gateway.db.engine import make_engine, session_scope
    from gateway.db.migrate import upgrade
    from gateway.db.models import Role
    from gateway.db.timeutil import utcnow
    from gateway.services import accounts

    data.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or f"sqlite:///{(data / 'tiergate.db').resolve()}")
    upgrade(engine)
    with session_scope(engine) as session:
        pub = accounts.create_user(session, "pub", Role.publisher, "bench")
        dev = accounts.create_user(session, "dev", Role.developer, None)
        now = utcnow()
        return (
            accounts.issue_token(session, pub, name="b", now=now).plaintext,
            accounts.issue_token(session, dev, name="b", now=now).plaintext,
        )


def wait_http(url: str, process: subprocess.Popen[bytes], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited ({process.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    sys.exit(f"{what} did not start within {limit:.0f} s")


def start_gateway(
    data: Path,
    engines: Path,
    port: int,
    database_url: str | None,
    *,
    source: Path = ROOT,
    server: str = "",
) -> subprocess.Popen[bytes]:
    code = (
        "import uvicorn\n"
        "from gateway.app import create_app\n"
        "from gateway.config import Settings\n"
        f"s = Settings(data_dir={str(data)!r}, log_level='warning', engines_file={str(engines)!r},"
        f" database_url={database_url!r},"
        " generation_tokens_per_minute=10**9, rate_limit_tokens_per_account=10**6,"
        " generation_max_tokens=4096)\n"
        f"uvicorn.run(create_app(s), host='127.0.0.1', port={port}, log_config=None, "
        f"access_log=False{server})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(source)}
    process = subprocess.Popen([sys.executable, "-c", code], cwd=source, env=env)
    wait_http(f"http://127.0.0.1:{port}/healthz", process, "the gateway", 120)
    return process


def start_fake(
    model: Path, keyset: Path, port: int, interval_ms: float, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, str(ROOT / "bench" / "fake_vllm_engine.py"), "--model", str(model),
        "--keyset", str(keyset), "--served-name", TIER, "--port", str(port),
        "--token-interval-ms", str(interval_ms),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_http(f"http://127.0.0.1:{port}/health", process, f"the fake engine (log: {log})", 120)
    return process


def start_vllm(
    python: Path, model: Path, keyset: Path, site: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": str(site),
        "TIERGATE_WATERMARK_KEYSET": str(keyset),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_USE_V2_MODEL_RUNNER": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", TIER, "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
        "--max-num-seqs", "32",
        "--logits-processors", "watermark.vllm_plugin:TiergateWatermarkLogitsProcessor",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_http(f"http://127.0.0.1:{port}/health", process, f"vLLM (log: {log})", 900)
    return process


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) of process ``root`` and every descendant, from /proc (0 where
    /proc is missing): the gateway's and the engine's share of the shared cores."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(entry.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def start_profilers(
    args: argparse.Namespace, pids: dict[str, int], level: int
) -> list[subprocess.Popen[bytes]]:
    """py-spy on every gateway for one level, when ``--profile`` asks."""
    spy = shutil.which("py-spy")
    if not args.profile or spy is None:
        return []
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    processes = []
    for name, pid in pids.items():
        if name == "engine":
            continue
        out = str(Path(args.profile) / f"{name}-c{level}.txt")
        command = [spy, "record", "--nonblocking", "--rate", "100", "--format", "raw",
                   "-o", out, "--pid", str(pid)]  # fmt: skip
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return processes


def start_baseline(
    ref: str, tmp: Path, engines: Path, out: Path, *, pure_python: bool = True
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """A second gateway running this repository's code at ``ref`` (``git archive``) on its
    own SQLite database with the first one's keys (so the engine's key set fits both), on
    uvicorn's pure-Python loop and HTTP parser (``loop="asyncio", http="h11"``: what ran
    before uvloop and httptools were declared) unless ``pure_python`` is off (then the same
    server as this side's). Its publisher token publishes the release."""
    from release.upload import publish_release_folder
    from tests.conftest import free_port

    source = tmp / "baseline-src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    data = tmp / "baseline-data"
    # The same keys, not the first gateway's checkpoint anchor: this database's log is new,
    # and the anchor of another log's checkpoint reads as a rollback (the log stops signing,
    # which would spare this side its integration work).
    shutil.copytree(
        tmp / "data" / "keys",
        data / "keys",
        ignore=shutil.ignore_patterns("log-checkpoint-anchor.note*"),
    )
    pub, dev = make_tokens(data, None)
    port = free_port()
    server = ", loop='asyncio', http='h11'" if pure_python else ""
    process = start_gateway(data, engines, port, None, source=source, server=server)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {pub}"}) as h:
        h.post("/api/keys", json={"pem": (tmp / "pub.pem").read_text()}).raise_for_status()
        publish_release_folder(out, client=h)
    probe = httpx.post(
        f"{url}/v1/completions",
        json={"model": TIER, "prompt": "warm", "max_tokens": 4},
        headers={"Authorization": f"Bearer {dev}"},
        timeout=600,
    )
    if probe.status_code != 200:
        sys.exit(f"the baseline gateway cannot use the engine: {probe.text}")
    return url, dev, process


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """End one level's py-spy runs, each writing its stacks."""
    for profiler in profilers:
        profiler.send_signal(2)  # SIGINT: py-spy writes its flame graph
        profiler.wait(timeout=120)


def print_level(
    level: int,
    names: list[str],
    rates: dict[str, list[float]],
    ttfts: dict[str, list[float]],
    cpu: dict[str, dict[str, float]],
) -> None:
    """One line per side for ``level``: median tokens/s and TTFT against ``direct``'s, CPU ms
    per 1,000 tokens (engine, the side's own gateway, this client), the per-round ratios."""
    d = statistics.median(rates["direct"])
    td = statistics.median(ttfts["direct"]) * 1e3
    for name in names:
        g = statistics.median(rates[name])
        tg = statistics.median(ttfts[name]) * 1e3
        pairs = " ".join(f"{b / a:.2f}" for a, b in zip(rates["direct"], rates[name], strict=True))
        spent = cpu[name]
        per_k = {p: 1e6 * v / max(spent["tokens"], 1) for p, v in spent.items()}
        own = "" if name == "direct" else f"{per_k[name]:.0f}"
        print(
            f"{level:>5}  {name:<8} {g:>7.1f}  {g / d:.3f}  {tg:>7.1f}  {tg - td:>+6.1f}"
            f"   {per_k['engine']:>5.0f}, {own:>4}, {per_k['client']:>4.0f}   ({pairs})"
        )
