"""Report verification rates: genuine quotes verified, human text and other keys' output not.

Run: ``.venv/bin/python bench/report_verification.py`` (defaults: 40 calls x 4 choices x 360
tokens per model, every 300-token stretch of the fortunes corpus up to ``--human 2500``).

A real gateway (uvicorn, SQLite, its own process) serves two releases built from the same
tiny Llama of the tests: ``bench/tiny`` and ``bench/other``. They share weights and tokenizer
and differ only in their watermark key (keys are derived per model), so ``bench/other``'s
output is exactly "the output of another key". Reports are filed with ``POST /api/reports``
naming ``bench/tiny``, each quoting one of:

- ``genuine, whole``: a whole logged output of ``bench/tiny`` (verified by its digest);
- ``genuine, 300-token excerpt``: tokens 20..320 of a logged output, unedited, cut at token
  offsets of the model's tokenizer (no digest matches: the watermark must attribute it);
- ``other key, whole`` and ``other key, excerpt``: the same from ``bench/other``;
- ``human``: Debian's ``fortunes`` corpora (``apt-get install -y fortunes``; every file of
  /usr/share/games/fortunes, fortunes split on ``%`` lines, kept when over 40 characters),
  concatenated in file order into quotes of >= 300 tokens, each fortune used once.

``--other-keys N`` adds ``random other keys, 300-token excerpt``: N completions of the same
model sampled in this process with the gateway's watermark scheme and settings under a fresh
random key per ``--batch`` rows (thousands of logged calls would take hours here), quoted as
300-token excerpts. With no false verification in N negatives, the exact one-sided 95% bound
``1 - 0.05^(1/N)`` is printed: below 1e-3 from N = 2,995.

Choices that stop before 340 tokens (end of sequence) are left out and counted. For each
class the rate of ``verified`` answers is printed with its Wilson 95% interval; the targets
are 100% for the genuine classes and <= 1e-3 for the others. The digest check cannot
false-verify; the watermark check runs at alpha 1e-6 (report_verification.WATERMARK_ALPHA),
so the false rate's analytic bound is far below what a run of this size can resolve.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

EXCERPT = (20, 320)  # token positions of the quoted excerpt
MIN_TOKENS = EXCERPT[1] + 20
FORTUNES = Path("/usr/share/games/fortunes")


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def build(root: Path) -> tuple[Path, Path]:
    """Two releases of one tiny model, differing only in name (hence in watermark key)."""
    from datetime import UTC, datetime

    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release
    from release.testing import build_tiny_model

    model = build_tiny_model(root / "model", train_steps=30)
    # 512 positions (RoPE: the limit is a config field), so 360-token completions fit.
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 512
    (model / "config.json").write_text(json.dumps(config))
    key = PrivateKey.generate()
    (root / "pub.pem").write_bytes(key.public_key.to_pem())
    outs = []
    for name in ("tiny", "other"):
        out = root / f"out-{name}"
        # bf16 and no tokenizer check: only the open tier serves, and the build is seconds.
        options = BuildOptions(
            repo_id=f"bench/{name}",
            version="1.0.0",
            optimize="bf16",
            check_tokenizer=False,
            approval=ApprovalPolicy(),
        )
        build_release(
            model, out, key=key, options=options, now=datetime.now(UTC), show_progress=False
        )
        outs.append(out)
    return outs[0], outs[1]


def generate(url: str, token: str, model: str, calls: int, choices: int) -> list[str]:
    """Whole outputs of ``calls`` logged calls of ``choices`` choices each."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}

    def one(i: int) -> list[str]:
        body = {
            "model": model,
            "prompt": f"Report {i}: the model said",
            "max_tokens": MIN_TOKENS + 20,
            "n": choices,
            "seed": i,
        }
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            response = http.post("/v1/completions", json=body)
            if response.status_code != 200:
                raise SystemExit(f"{model}: {response.status_code} {response.text}")
            return [c["text"] for c in response.json()["choices"]]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return [t for texts in pool.map(one, range(calls)) for t in texts]


def excerpts(texts: list[str], tokenizer: Any) -> tuple[list[str], int]:
    """Tokens EXCERPT of each text long enough, as an unedited slice; and how many were short."""
    out, short = [], 0
    for text in texts:
        offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)[
            "offset_mapping"
        ]
        if len(offsets) < MIN_TOKENS:
            short += 1
            continue
        start, end = offsets[EXCERPT[0]][0], offsets[EXCERPT[1] - 1][1]
        out.append(text[start:end])
    return out, short


def other_key_outputs(model_dir: Path, count: int, batch: int, seed: int = 0) -> list[str]:
    """``count`` completions of the same model sampled here, outside the gateway, with the
    gateway's watermark scheme and settings (delta, context, a random call tag per row) under
    a fresh random key per batch of ``batch`` rows: "output of other keys" at scale, without
    decoding thousands of calls one request at a time."""
    import random

    import torch
    from transformers import AutoTokenizer

    from gateway.config import Settings
    from gateway.generation.keys import watermark_config_for
    from release.loader import load_model
    from watermark import WatermarkKey, build_logits_processors

    defaults = Settings()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = load_model(model_dir)
    rng = random.Random(seed)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    out: list[str] = []
    while len(out) < count:
        rows = min(batch, count - len(out))
        key = WatermarkKey(rng.randbytes(32))
        config = watermark_config_for(
            key,
            int(model.config.vocab_size),
            tokenizer,
            delta=defaults.watermark_delta,
            payload_bits=defaults.watermark_payload_bits,
        )
        payloads = [rng.getrandbits(defaults.watermark_payload_bits) for _ in range(rows)]
        prompts = [f"Report {len(out) + i}: the model said" for i in range(rows)]
        encoded = [tokenizer(p)["input_ids"] for p in prompts]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        processors = build_logits_processors(config, key, payload=payloads, inplace=True)
        torch.manual_seed(rng.getrandbits(31))
        with torch.inference_mode():
            generated = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=MIN_TOKENS + 20,
                logits_processor=processors,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
        for row in generated[:, width:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            out.append(tokenizer.decode(row, skip_special_tokens=True))
        print(f"  other keys: {len(out)}/{count} sampled", flush=True)
    return out


def one_sided_upper(n: int, alpha: float = 0.05) -> float:
    """Exact (Clopper-Pearson) one-sided upper bound on a rate with 0 events in ``n``."""
    return 1.0 - alpha ** (1.0 / n) if n else 1.0


def human_quotes(tokenizer: Any, limit: int) -> list[str]:
    if not FORTUNES.is_dir():
        raise SystemExit("no corpus: apt-get install -y fortunes")
    quotes: list[str] = []
    current: list[str] = []
    tokens = 0
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or not path.is_file():  # skip the .dat indexes and .u8 links
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for fortune in (t.strip() for t in raw.split("\n%\n")):
            if len(fortune) <= 40:
                continue
            current.append(fortune)
            tokens += len(tokenizer(fortune, add_special_tokens=False)["input_ids"])
            if tokens >= EXCERPT[1] - EXCERPT[0]:
                quotes.append("\n\n".join(current))
                current, tokens = [], 0
                if len(quotes) >= limit:
                    return quotes
    return quotes


def file_reports(url: str, token: str, quotes: list[str]) -> list[dict[str, Any]]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}

    def one(quote: str) -> dict[str, Any]:
        body = {
            "model": "bench/tiny",
            "category": "other",
            "description": "benchmark report",
            "quoted_output": quote,
        }
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            response = http.post("/api/reports", json=body)
            response.raise_for_status()
            check: dict[str, Any] = response.json()["verification"]
            return check

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, quotes))


def _print_row(name: str, checks: list[dict[str, Any]]) -> None:
    hits = [c for c in checks if c["status"] == "verified"]
    low, high = wilson(len(hits), len(checks))
    methods: dict[str, int] = {}
    for c in hits:
        methods[c["method"]] = methods.get(c["method"], 0) + 1
    rate = len(hits) / len(checks) if checks else float("nan")
    # With no hit, the exact one-sided bound is what "<= 1e-3 at 95%" asks about.
    bound = f"  one-sided 95% <= {one_sided_upper(len(checks)):.2e}" if not hits else ""
    print(
        f"{name:<34} {len(checks):>5} {len(hits):>8} {rate:>7.4f}  "
        f"[{low:.4f}, {high:.4f}]  {methods or '-'}{bound}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="logged calls per model")
    parser.add_argument("--choices", type=int, default=4, help="choices per call (n)")
    parser.add_argument("--human", type=int, default=2500, help="at most this many human quotes")
    parser.add_argument(
        "--other-keys",
        type=int,
        default=0,
        help="also this many 300-token excerpts sampled here under random other keys",
    )
    parser.add_argument("--batch", type=int, default=64, help="rows per --other-keys batch")
    parser.add_argument(
        "--other-keys-seed",
        type=int,
        default=0,
        help="seed of the --other-keys sample (another seed: other keys, so runs can be pooled)",
    )
    args = parser.parse_args()

    import httpx
    from generation_overhead import make_tokens, start_server
    from transformers import AutoTokenizer

    from release.upload import publish_release_folder

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="tiergate-bench-reports-"))
    tiny, other = build(root)
    phases = {"build": time.perf_counter() - started}
    pub, dev = make_tokens(root / "data")
    url, server = start_server(
        root / "data",
        extra={
            "rate_limit_reports_per_account": 10**7,
            "rate_limit_reports_per_address": 10**7,
            "rate_limit_detections_per_account": 10**7,
        },
    )
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {pub}"}) as http:
            http.post("/api/keys", json={"pem": (root / "pub.pem").read_text()}).raise_for_status()
            publish_release_folder(tiny, client=http)
            publish_release_folder(other, client=http)
        tokenizer = AutoTokenizer.from_pretrained(str(tiny / "open"))
        genuine = generate(url, dev, "bench/tiny", args.calls, args.choices)
        foreign = generate(url, dev, "bench/other", args.calls, args.choices)
        genuine_cut, genuine_short = excerpts(genuine, tokenizer)
        foreign_cut, foreign_short = excerpts(foreign, tokenizer)
        classes = {
            "genuine, whole": genuine,
            "genuine, 300-token excerpt": genuine_cut,
            "other key, whole": foreign,
            "other key, 300-token excerpt": foreign_cut,
            "human (fortunes, >= 300 tokens)": human_quotes(tokenizer, args.human),
        }
        phases["generate"] = time.perf_counter() - started - phases["build"]
        results = {}
        print(f"built in {phases['build']:.0f} s, generated in {phases['generate']:.0f} s")
        print(f"{'class':<34} {'n':>5} {'verified':>8} {'rate':>7}  {'Wilson 95%':>17}  methods")
        for name, quotes in classes.items():
            begun = time.perf_counter()
            results[name] = file_reports(url, dev, quotes)
            phases[name] = time.perf_counter() - begun
            _print_row(name, results[name])
        if args.other_keys:  # sampled last: the rows above are printed before this long part
            begun = time.perf_counter()
            sampled = other_key_outputs(
                tiny / "open", args.other_keys, args.batch, args.other_keys_seed
            )
            phases["other keys, sampling"] = time.perf_counter() - begun
            name = "random other keys, 300-token excerpt"
            begun = time.perf_counter()
            results[name] = file_reports(url, dev, excerpts(sampled, tokenizer)[0])
            phases[name] = time.perf_counter() - begun
            _print_row(name, results[name])
    finally:
        server.terminate()
        server.wait(30)

    print(
        f"{args.calls} calls x {args.choices} choices per model, excerpt tokens {EXCERPT}; "
        f"left out as shorter than {MIN_TOKENS} tokens: {genuine_short} genuine, "
        f"{foreign_short} other key; {time.perf_counter() - started:.0f} s in all"
    )
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))


if __name__ == "__main__":
    main()
