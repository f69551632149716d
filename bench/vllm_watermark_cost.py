"""Watermark cost inside vLLM: tokens/s of tagged vs untagged requests, same server, same run.

    TIERGATE_VLLM_ENV=.venv-vllm python bench/vllm_watermark_cost.py [--vocab 32000] [--rounds 3]

Starts one vLLM OpenAI server (CPU, eager) with the plugin on a tiny Llama built in a temp
dir, then at concurrency 1, 8 and 32 alternates rounds of untagged requests (the plugin's rows
table is empty: the engine runs as without it) and tagged requests (the gateway's scheme: h=1,
20-bit payload, delta 2), each request ``--tokens`` long with ``ignore_eos``. Prints the median
tokens/s of each and their ratio, and, measured inside the engine (bench/vllm_timed_plugin.py
wraps the plugin with a stopwatch), the share of each round's wall time spent in the plugin:
on a loaded shared machine throughput rounds swing by tens of percent, the in-engine share
does not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _server(
    python: Path, model: Path, keyset: Path, site: Path, port: int, log: Path, timing: Path
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": f"{site}{os.pathsep}{ROOT / 'bench'}",
        "TIERGATE_WATERMARK_KEYSET": str(keyset),
        "TIERGATE_BENCH_TIMING": str(timing),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_USE_V2_MODEL_RUNNER": "0",
        "VLLM_NO_USAGE_STATS": "1",
    }
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
        "--max-num-seqs", "32",
        "--logits-processors", "vllm_timed_plugin:TimedTiergateWatermarkLogitsProcessor",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(900):
        if process.poll() is not None:
            sys.exit(f"vLLM exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.terminate()
    sys.exit("vLLM did not start")


def _timing(path: Path) -> float:
    """Seconds the engine has spent in the plugin so far (update_state + apply)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0.0
    return float(data["update_s"]) + float(data["apply_s"])


def _round(
    url: str, concurrency: int, tokens: int, xargs: dict[str, object] | None
) -> tuple[float, float]:
    def one(i: int) -> int:
        body: dict[str, object] = {
            "model": "tiny",
            "prompt": [5 + i % 50, 17, 33, 9],
            "max_tokens": tokens,
            "temperature": 1.0,
            "seed": i,
            "ignore_eos": True,
        }
        if xargs is not None:
            body["vllm_xargs"] = {**xargs, "tiergate_payload": 1000 + i}
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=600)
        r.raise_for_status()
        return int(r.json()["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        total = sum(pool.map(one, range(concurrency)))
    wall = time.perf_counter() - start
    return total / wall, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,8,32")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "packaging"))
    from build_watermark_wheel import build_wheel

    from release.testing import build_tiny_model
    from tests.conftest import free_port
    from watermark import PayloadSettings, WatermarkConfig, WatermarkKey
    from watermark.keyset import KeySetEntry, WatermarkKeySet, write_keyset

    python = Path(os.environ.get("TIERGATE_VLLM_ENV") or ROOT / ".venv-vllm") / "bin" / "python"
    if not python.exists():
        sys.exit(f"no vLLM env at {python.parent.parent} (make vllm-env)")
    with tempfile.TemporaryDirectory(prefix="tiergate-vllm-bench-") as scratch:
        tmp = Path(scratch)
        model = build_tiny_model(tmp / "model", vocab_size=args.vocab, train_steps=0)
        config = json.loads((model / "config.json").read_text())
        config["max_position_embeddings"] = 512
        (model / "config.json").write_text(json.dumps(config))
        key = WatermarkKey(bytes(range(32)))
        wm = WatermarkConfig.create(key, args.vocab, payload=PayloadSettings(payload_bits=20))
        write_keyset(tmp / "keys.json", WatermarkKeySet([KeySetEntry(key, wm)]))
        wheel = build_wheel(tmp / "wheel")
        site = tmp / "site"
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
             str(wheel)],
            check=True,
        )  # fmt: skip
        port = free_port()
        timing = tmp / "timing.json"
        server = _server(python, model, tmp / "keys.json", site, port, tmp / "vllm.log", timing)
        url = f"http://127.0.0.1:{port}"
        try:
            _round(url, 4, 16, None)  # warm-up, and the kernel's first tagged call
            _round(url, 4, 16, {"tiergate_key_id": key.key_id})
            print(f"vocab {args.vocab}, {args.tokens} tokens per request, {args.rounds} rounds")
            print(
                "concurrency  untagged tok/s  tagged tok/s  ratio  "
                "plugin share of tagged / untagged rounds' wall time"
            )
            tag = {"tiergate_key_id": key.key_id}
            for level in (int(x) for x in args.levels.split(",")):
                plain, marked, ratios = [], [], []
                spent = {"plain": 0.0, "marked": 0.0}
                walls = {"plain": 0.0, "marked": 0.0}
                for _ in range(args.rounds):
                    for name, xargs, out in (("plain", None, plain), ("marked", tag, marked)):
                        before = _timing(timing)
                        rate, wall = _round(url, level, args.tokens, xargs)
                        spent[name] += _timing(timing) - before
                        walls[name] += wall
                        out.append(rate)
                    ratios.append(marked[-1] / plain[-1])
                p, m = statistics.median(plain), statistics.median(marked)
                share = spent["marked"] / walls["marked"]
                idle = spent["plain"] / walls["plain"]
                pairs = " ".join(f"{r:.2f}" for r in ratios)
                print(
                    f"{level:>11}  {p:>14.1f}  {m:>12.1f}  {m / p:.3f}  "
                    f"{share:.2%} / {idle:.2%}   (round ratios: {pairs})"
                )
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
