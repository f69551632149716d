"""Safety overhead in wall time: a 512-token completion through a real gateway with the
offline checks against the same call without them, and streaming time to first token with
against without the hold-back window (issue 19 targets: <= 5 ms p95; TTFT +<= one window).

Run: ``.venv/bin/python bench/safety_overhead.py`` (defaults: 30 interleaved pairs of
512-token completions, 20 pairs of streamed ones).

One gateway process (uvicorn, SQLite, local engine) serves two releases of the same tiny
trained Llama (``release.testing``, 1,024 positions): ``bench/plain`` signs no safety policy,
``bench/safe`` signs one running ``langid``, ``wordlist`` and ``classifier`` with every
category annotated at 0.5 and ``hold_back_chars`` 256 (annotate: the text is never changed,
so both calls return as many tokens). Calls alternate plain/safe (the order flips every
pair) with the same prompt and seed, so a load spike from other processes hits both alike.
Per pair the difference safe - plain is taken; p50/p95 of each side and of the differences
are printed, over the pairs where both calls returned 512 tokens. Streaming: time from the
request to the first non-empty content chunk, the same way.

The checks' own CPU cost is ``bench/safety_eval.py``'s cost table; this benchmark is what a
client sees, preemption by other processes included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOKENS = 512
POLICY = {
    "checks": ["langid", "wordlist", "classifier"],
    "rules": {"*": {"action": "annotate", "threshold": "0.5"}},
    "hold_back_chars": 256,
    "on_check_failure": "open",
}
PROMPTS = ["The release gateway", "Every file of a tier", "A model card describes"]


def build(root: Path) -> tuple[Path, Path]:
    """Two releases of one tiny model: without and with a safety policy."""
    from datetime import UTC, datetime

    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release
    from release.testing import build_tiny_model
    from safety.policy import parse_policy

    model = build_tiny_model(root / "model", train_steps=30)
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 1024  # RoPE: a config field; 512 new tokens fit
    (model / "config.json").write_text(json.dumps(config))
    key = PrivateKey.generate()
    (root / "pub.pem").write_bytes(key.public_key.to_pem())
    outs = []
    for name, policy in (("plain", None), ("safe", parse_policy(POLICY))):
        out = root / f"out-{name}"
        options = BuildOptions(
            repo_id=f"bench/{name}",
            version="1.0.0",
            optimize="bf16",
            check_tokenizer=False,  # what the gateway does per call is measured, not the build
            approval=ApprovalPolicy(),
            safety_policy=policy,
        )
        build_release(model, out, key=key, options=options, now=datetime.now(UTC))
        outs.append(out)
    return outs[0], outs[1]


def one_call(http: Any, model: str, prompt: str, seed: int) -> tuple[float, int]:
    body = {"model": model, "prompt": prompt, "max_tokens": TOKENS, "seed": seed}
    begun = time.perf_counter()
    response = http.post("/v1/completions", json=body)
    elapsed = time.perf_counter() - begun
    if response.status_code != 200:
        raise SystemExit(f"{model}: {response.status_code} {response.text}")
    return elapsed, int(response.json()["usage"]["completion_tokens"])


def first_token(http: Any, model: str, prompt: str, seed: int) -> float:
    """Seconds from the request to the first chunk with text (the stream is drained)."""
    body = {"model": model, "prompt": prompt, "max_tokens": TOKENS, "seed": seed, "stream": True}
    begun = time.perf_counter()
    first: float | None = None
    with http.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            raise SystemExit(f"{model}: {response.status_code} {response.read()!r}")
        for line in response.iter_lines():
            if first is None and line.startswith("data: {"):
                chunk = json.loads(line.removeprefix("data: "))
                if any(c.get("text") for c in chunk.get("choices", [])):
                    first = time.perf_counter() - begun
    if first is None:
        raise SystemExit(f"{model}: a stream with no text")
    return first


def quantiles(values: list[float]) -> tuple[float, float]:
    """p50 and p95 (inclusive method: defined from 2 values)."""
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]


def _row(name: str, values: list[float]) -> None:
    p50, p95 = quantiles(values)
    print(f"{name:<30} {len(values):>4} {p50 * 1e3:>10.1f} {p95 * 1e3:>10.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=30, help="interleaved completion pairs")
    parser.add_argument("--stream-pairs", type=int, default=20, help="interleaved stream pairs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (gateway)")
    args = parser.parse_args()

    import httpx
    from generation_overhead import make_tokens, start_server

    from release.upload import publish_release_folder

    root = Path(tempfile.mkdtemp(prefix="tiergate-bench-safety-"))
    started = time.perf_counter()
    plain, safe = build(root)
    built = time.perf_counter() - started
    pub, dev = make_tokens(root / "data")
    url, server = start_server(root / "data", threads=args.threads)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {pub}"}) as http:
            http.post("/api/keys", json={"pem": (root / "pub.pem").read_text()}).raise_for_status()
            publish_release_folder(plain, client=http)
            publish_release_folder(safe, client=http)
        headers = {"Authorization": f"Bearer {dev}"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            for model in ("bench/plain", "bench/safe"):  # load both models and the checks
                one_call(http, model, PROMPTS[0], 0)
                first_token(http, model, PROMPTS[0], 0)
            times: dict[str, list[float]] = {"plain": [], "safe": []}
            diffs: list[float] = []
            short = 0
            scans_before = scan_histogram(http)
            for i in range(args.pairs):
                prompt = PROMPTS[i % len(PROMPTS)]
                order = ("plain", "safe") if i % 2 == 0 else ("safe", "plain")
                got = {name: one_call(http, f"bench/{name}", prompt, 100 + i) for name in order}
                if any(tokens != TOKENS for _, tokens in got.values()):
                    short += 1
                    continue
                for name in order:
                    times[name].append(got[name][0])
                diffs.append(got["safe"][0] - got["plain"][0])
            scans = {le: n - scans_before.get(le, 0.0) for le, n in scan_histogram(http).items()}
            ttft: dict[str, list[float]] = {"plain": [], "safe": []}
            ttft_diffs: list[float] = []
            for i in range(args.stream_pairs):
                prompt = PROMPTS[i % len(PROMPTS)]
                order = ("plain", "safe") if i % 2 == 0 else ("safe", "plain")
                seen = {name: first_token(http, f"bench/{name}", prompt, 500 + i) for name in order}
                for name in order:
                    ttft[name].append(seen[name])
                ttft_diffs.append(seen["safe"] - seen["plain"])
    finally:
        server.terminate()
        server.wait(30)

    print(f"built in {built:.0f} s; {short} pairs left out (a call under {TOKENS} tokens)")
    print(f"{'case (ms)':<30} {'n':>4} {'p50':>10} {'p95':>10}")
    _row(f"{TOKENS} tokens, no policy", times["plain"])
    _row(f"{TOKENS} tokens, offline checks", times["safe"])
    _row("difference (checks - none)", diffs)
    _row("stream TTFT, no policy", ttft["plain"])
    _row("stream TTFT, hold-back 256", ttft["safe"])
    _row("TTFT difference", ttft_diffs)
    per_token = statistics.median(times["plain"]) / TOKENS if times["plain"] else float("nan")
    print(
        f"decode {per_token * 1e3:.2f} ms/token (plain p50 / {TOKENS}); one 256-character "
        f"window is about 64 tokens = {64 * per_token * 1e3:.0f} ms of decoding"
    )
    _scan_row(scans)
    print(f"{time.perf_counter() - started:.0f} s in all")


def scan_histogram(http: Any) -> dict[str, float]:
    """The gateway's ``tiergate_safety_scan_seconds`` histogram as scraped: cumulative bucket
    counts by upper bound, plus ``sum`` and ``count``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "tiergate_safety_scan_seconds_bucket":
                out[sample.labels["le"]] = sample.value
            elif sample.name == "tiergate_safety_scan_seconds_sum":
                out["sum"] = sample.value
            elif sample.name == "tiergate_safety_scan_seconds_count":
                out["count"] = sample.value
    return out


def _scan_row(scans: dict[str, float]) -> None:
    """The checks' time inside the gateway, per completion of the pairs above: free of the
    decoding noise the call-to-call differences carry."""
    count = scans.get("count", 0.0)
    if not count:
        print("safety scans in the gateway: none recorded")
        return
    bounds = sorted((float(le), n) for le, n in scans.items() if le not in ("sum", "count"))
    p95 = next(le for le, n in bounds if n >= 0.95 * count)
    p50 = next(le for le, n in bounds if n >= 0.5 * count)
    print(
        f"safety scans in the gateway (tiergate_safety_scan_seconds): {count:.0f} scans, "
        f"mean {scans['sum'] / count * 1e3:.2f} ms, p50 <= {p50 * 1e3:g} ms, "
        f"p95 <= {p95 * 1e3:g} ms (bucket bounds)"
    )


if __name__ == "__main__":
    main()
