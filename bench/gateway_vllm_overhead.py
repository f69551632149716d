"""Gateway overhead on a vLLM engine: tokens/s and time to first token through the gateway
versus the same vLLM server called directly, same run, interleaved.

    TIERGATE_VLLM_ENV=.venv-vllm python bench/gateway_vllm_overhead.py [--rounds 3]

Builds and signs a tiny trained Llama (512 positions), starts the gateway in its own process
with an engines file routing the release's open tier to one vLLM OpenAI server (CPU build,
eager, the tiergate plugin and the key set the gateway derives for the tier), publishes the
release, and lets the canary admit the replica. Then, at each concurrency level (1, 8, 32
streams in flight), it alternates rounds of:

- ``direct``: streamed ``/v1/completions`` straight to vLLM with the body the gateway would
  send (prompt token ids, ``vllm_xargs`` with the key id and a call tag, ``return_token_ids``),
  so the engine does the same work;
- ``gateway``: the same prompts through the gateway's streamed ``/v1/completions`` (auth,
  admission, quota, call tag, relay, ``generation.completed`` log entry, receipt-ready).

Each request asks for ``--tokens`` tokens; tokens/s counts completion tokens over the round's
wall time; TTFT is the time from sending to the first non-empty text chunk. Prints the median
of the rounds for each side and the ratios (target: >= 0.95x tokens/s, TTFT within +5 ms).
The machine running this is shared: rounds swing, so compare the per-round pairs too.

``--fake-engine`` replaces vLLM with ``bench/fake_vllm_engine.py`` (canned vLLM-shaped chunks
at ``--token-interval-ms`` per token and stream; the canary is watermarked for real), so the
gateway's own CPU per call and per token is measured without an engine's CPU beside it.
``--profile DIR`` runs py-spy (if on PATH; ``--nonblocking``, so it does not pause the
gateway) on each gateway at every level and writes collapsed stacks there.

The processes it starts and watches, and the lines it prints per level, are
``bench/gateway_vllm_harness.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_vllm_harness import (
    REPO,
    ROOT,
    TIER,
    build,
    cpu_seconds,
    make_tokens,
    print_level,
    start_baseline,
    start_fake,
    start_gateway,
    start_profilers,
    start_vllm,
    stop_profilers,
)

FAILURES: list[str] = []
PROMPTS = [
    "The release gateway",
    "Every file of a tier",
    "A model card describes",
    "The watermark is applied",
    "Detectors compute a",
    "The quick brown fox",
    "Signed checkpoints prove",
    "A small model learns",
]


class Refused(Exception):
    """A request answered with an error status (counted, not fatal)."""


async def one_stream(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, float]:
    """(completion tokens, seconds to the first text) of one streamed completion."""
    start = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise Refused(f"{response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise Refused(f"{url}: in-band {chunk['error'].get('code')}")
            for choice in chunk.get("choices") or []:
                if first is None and choice.get("text"):
                    first = time.perf_counter() - start
            usage = chunk.get("usage")
            if usage:
                tokens = int(usage["completion_tokens"])
    return tokens, first if first is not None else time.perf_counter() - start


async def run_round(
    http: httpx.AsyncClient,
    level: int,
    requests: int,
    make: Any,
) -> tuple[float, list[float]]:
    """tokens/s over the round and each request's TTFT, ``level`` requests in flight."""
    queue = list(range(requests))
    ttfts: list[float] = []
    total = 0

    async def worker() -> None:
        nonlocal total
        while queue:
            i = queue.pop()
            url, body, headers = make(i)
            try:
                tokens, ttft = await one_stream(http, url, body, headers)
            except Refused as exc:
                FAILURES.append(str(exc))
                continue
            except httpx.HTTPError as exc:  # a dropped connection: counted, not fatal
                FAILURES.append(f"{url}: {type(exc).__name__}")
                continue
            total += tokens
            ttfts.append(ttft)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(level)))
    return total / (time.perf_counter() - start), ttfts


async def measure(
    args: argparse.Namespace,
    gateways: dict[str, tuple[str, str]],
    engine: str,
    key_id: str,
    prompt_ids: list[list[int]],
    pids: dict[str, int],
) -> None:
    """``gateways``: side name -> (URL, developer token); ``pids``: process name -> pid."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:

        def direct(i: int) -> tuple[str, dict[str, Any], dict[str, str]]:
            body = {
                "model": TIER, "prompt": prompt_ids[i % len(prompt_ids)],
                "max_tokens": args.tokens, "temperature": 1.0, "top_p": 1.0, "n": 1,
                "seed": i, "return_token_ids": True, "skip_special_tokens": True,
                "stream": True, "stream_options": {"include_usage": True},
                "vllm_xargs": {"tiergate_key_id": key_id, "tiergate_payload": i % 1000},
            }  # fmt: skip
            return f"{engine}/v1/completions", body, {}

        def through(url: str, token: str) -> Any:
            def make(i: int) -> tuple[str, dict[str, Any], dict[str, str]]:
                body = {
                    "model": TIER, "prompt": PROMPTS[i % len(PROMPTS)],
                    "max_tokens": args.tokens, "temperature": 1.0, "seed": i, "stream": True,
                }  # fmt: skip
                return f"{url}/v1/completions", body, {"Authorization": f"Bearer {token}"}

            return make

        sides = [("direct", direct)] + [(n, through(*g)) for n, g in gateways.items()]
        for _, make in sides:
            await run_round(http, 4, 8, make)  # warm every path
        # What each process spends with no call in flight (background work: the log's
        # integration, health checks), to tell it from the per-call and per-token costs.
        before = {p: cpu_seconds(pid) for p, pid in pids.items()}
        await asyncio.sleep(5.0)
        idle = ", ".join(f"{p} {200 * (cpu_seconds(i) - before[p]):.0f}" for p, i in pids.items())
        print(f"idle CPU ms per second: {idle}")
        print(
            f"{args.tokens} tokens per request, {args.rounds} rounds per level, "
            f"requests per round = max(2 x level, 8), streamed"
        )
        print(
            "level  side      tok/s    ratio   TTFT ms  delta   CPU ms/1000 tok: engine, "
            "gateway(s), client   (per-round ratios)"
        )
        for level in (int(x) for x in args.levels.split(",")):
            requests = max(2 * level, 8)
            rates: dict[str, list[float]] = {name: [] for name, _ in sides}
            ttfts: dict[str, list[float]] = {name: [] for name, _ in sides}
            # CPU seconds per side and process (gateways, engine, this client) and tokens.
            cpu: dict[str, dict[str, float]] = {
                name: dict.fromkeys((*pids, "client", "tokens"), 0.0) for name, _ in sides
            }
            profilers = start_profilers(args, pids, level)
            for r in range(args.rounds):
                # Rotate which side goes first, so a load drift hits every side alike.
                order = sides[r % len(sides) :] + sides[: r % len(sides)]
                for name, make in order:
                    before = {p: cpu_seconds(pid) for p, pid in pids.items()}
                    client = time.process_time()
                    start = time.perf_counter()
                    rate, times = await run_round(http, level, requests, make)
                    wall = time.perf_counter() - start
                    for p, pid in pids.items():
                        cpu[name][p] += cpu_seconds(pid) - before[p]
                    cpu[name]["client"] += time.process_time() - client
                    cpu[name]["tokens"] += rate * wall
                    rates[name].append(rate)
                    ttfts[name].extend(times)
            stop_profilers(profilers)
            print_level(level, [name for name, _ in sides], rates, ttfts, cpu)
            if FAILURES:
                print(f"       FAILED requests: {len(FAILURES)} ({FAILURES[0]})")
            FAILURES.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument(
        "--database-url",
        default=None,
        help="the gateway's database (default: SQLite in the scratch dir); an EMPTY PostgreSQL "
        "database for the scale-out setup, e.g. postgresql+psycopg://postgres@127.0.0.1/bench",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="GIT_REF",
        help="also measure a second gateway running this repository at GIT_REF on uvicorn's "
        "pure-Python loop and parser (before/after in the same run; SQLite only)",
    )
    parser.add_argument(
        "--baseline-same-server",
        action="store_true",
        help="run the baseline gateway on the same uvicorn loop and parser as this one",
    )
    parser.add_argument(
        "--fake-engine",
        action="store_true",
        help="bench/fake_vllm_engine.py instead of vLLM: canned chunks at a fixed rate",
    )
    parser.add_argument("--token-interval-ms", type=float, default=5.0)
    parser.add_argument("--profile", default=None, metavar="DIR", help="py-spy collapsed stacks")
    args = parser.parse_args()
    if args.baseline and args.database_url:
        parser.error("--baseline runs on SQLite only")

    sys.path.insert(0, str(ROOT / "packaging"))
    from build_watermark_wheel import build_wheel

    from gateway.generation.keys import tier_keyset_entry
    from gateway.generation.models import ModelCache
    from gateway.keyring import load_keyring
    from release.upload import publish_release_folder
    from tests.conftest import free_port
    from watermark.keyset import WatermarkKeySet, write_keyset

    python = Path(os.environ.get("TIERGATE_VLLM_ENV") or ROOT / ".venv-vllm") / "bin" / "python"
    if not python.exists() and not args.fake_engine:
        sys.exit(f"no vLLM env at {python.parent.parent} (make vllm-env)")
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tiergate-gw-vllm-bench-") as scratch:
        tmp = Path(scratch)
        try:
            out = build(tmp)
            site = tmp / "site"
            if not args.fake_engine:
                wheel = build_wheel(tmp / "wheel")
                subprocess.run(
                    [str(python), "-m", "pip", "install", "-q", "--no-deps", "--target",
                     str(site), str(wheel)],
                    check=True,
                )  # fmt: skip
            engine_port, gateway_port = free_port(), free_port()
            engine = f"http://127.0.0.1:{engine_port}"
            engines = tmp / "engines.toml"
            engines.write_text(f'[[engine]]\nmodel = "{TIER}"\nurls = ["{engine}"]\n')
            pub, dev = make_tokens(tmp / "data", args.database_url)
            processes.append(start_gateway(tmp / "data", engines, gateway_port, args.database_url))
            gateway = f"http://127.0.0.1:{gateway_port}"
            with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {pub}"}) as h:
                h.post("/api/keys", json={"pem": (tmp / "pub.pem").read_text()}).raise_for_status()
                publish_release_folder(out, client=h)
            folder = out / "open"
            tokenizer = ModelCache._load_tokenizer(folder)
            config = json.loads((folder / "config.json").read_text())
            entry = tier_keyset_entry(
                load_keyring(tmp / "data" / "keys").watermark_master_key, REPO, "1.0.0", "open",
                vocab_size=int(config["vocab_size"]), tokenizer=tokenizer, delta=2.0,
                payload_bits=20,
            )  # fmt: skip
            write_keyset(tmp / "keys.json", WatermarkKeySet([entry]))
            if args.fake_engine:
                processes.append(
                    start_fake(
                        folder,
                        tmp / "keys.json",
                        engine_port,
                        args.token_interval_ms,
                        tmp / "engine.log",
                    )
                )
            else:
                processes.append(
                    start_vllm(
                        python, folder, tmp / "keys.json", site, engine_port, tmp / "vllm.log"
                    )
                )
            prompt_ids = [[int(t) for t in tokenizer(p)["input_ids"]] for p in PROMPTS]
            probe = httpx.post(
                f"{gateway}/v1/completions",
                json={"model": TIER, "prompt": "warm", "max_tokens": 4},
                headers={"Authorization": f"Bearer {dev}"},
                timeout=600,
            )
            if probe.status_code != 200:
                sys.exit(f"the gateway cannot use the engine: {probe.text}")
            gateways = {"gateway": (gateway, dev)}
            pids = {"gateway": processes[0].pid, "engine": processes[1].pid}
            if args.baseline:
                url, token, process = start_baseline(
                    args.baseline, tmp, engines, out, pure_python=not args.baseline_same_server
                )
                processes.append(process)
                gateways["baseline"] = (url, token)
                pids["baseline"] = process.pid
            print(f"pids: {pids}", flush=True)
            asyncio.run(measure(args, gateways, engine, entry.key.key_id, prompt_ids, pids))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
