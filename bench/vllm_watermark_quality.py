"""Watermark quality inside vLLM: the perplexity ratio of watermarked to plain samples through
vLLM against the local engine's, same model, same prompts, same delta/gamma, same run.

    TIERGATE_VLLM_ENV=.venv-vllm nice -n 19 python bench/vllm_watermark_quality.py \
        [--n 240] [--tokens 100] [--deltas 1,2,4] [--train-steps 40]

Trains the tiny Llama of the tests (``release.testing``), then for each delta draws ``--n``
continuations of held-out prompts four ways: plain and watermarked (the gateway's scheme:
h=1, gamma 0.25, 20-bit payload) with the local engine (``transformers.generate`` with
``watermark``'s processor, as bench/watermark_eval_lm.py samples) and through one vLLM OpenAI
server with the plugin (untagged and tagged requests, as bench/vllm_watermark_cost.py starts
it). All samples are scored by the same oracle (the model itself at temperature 1, the
``oracle`` of bench/watermark_eval_lm.py), so the two engines' PPL ratios are comparable; the
last column is vLLM's log-ratio minus the local one with a +-2 standard error band (unpaired:
different samples), and "matches" means that band holds 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from lm_sampling import Marking, oracle, ppl, ppl_ratio, sample  # noqa: E402
from vllm_watermark_cost import _server  # noqa: E402

PROMPT = 8


def _vllm_samples(
    url: str, prompts: list[list[int]], tokens: int, xargs: dict[str, Any] | None,
    payloads: list[int],
) -> np.ndarray:  # fmt: skip
    def one(i: int) -> list[int]:
        body: dict[str, Any] = {
            "model": "tiny",
            "prompt": prompts[i],
            "max_tokens": tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "seed": 7919 * (i + 1),
            "ignore_eos": True,
            "return_token_ids": True,
        }
        if xargs is not None:
            body["vllm_xargs"] = {**xargs, "tiergate_payload": payloads[i]}
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=600)
        r.raise_for_status()
        ids = [int(t) for t in r.json()["choices"][0]["token_ids"]]
        if len(ids) != tokens:
            raise RuntimeError(f"vLLM returned {len(ids)} tokens, asked {tokens}")
        return ids

    with ThreadPoolExecutor(max_workers=16) as pool:
        return np.array(list(pool.map(one, range(len(prompts)))), dtype=np.int64)


def _band(d_vllm: np.ndarray, d_local: np.ndarray) -> tuple[str, bool]:
    diff = float(d_vllm.mean() - d_local.mean())
    se = math.sqrt(d_vllm.var(ddof=1) / d_vllm.size + d_local.var(ddof=1) / d_local.size)
    return f"{diff:+.3f} +- {2 * se:.3f}", abs(diff) <= 2 * se


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=240, help="prompts = samples per cell")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--deltas", default="1,2,4")
    parser.add_argument("--gamma", type=float, default=0.25)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared box: 1)")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, str(ROOT / "packaging"))
    from build_watermark_wheel import build_wheel

    from release.testing import TINY_CORPUS, build_tiny_model
    from tests.conftest import free_port
    from watermark import PayloadSettings, WatermarkConfig, WatermarkKey, detect
    from watermark.keyset import KeySetEntry, WatermarkKeySet, write_keyset

    torch.set_num_threads(args.threads)
    python = Path(os.environ.get("TIERGATE_VLLM_ENV") or ROOT / ".venv-vllm") / "bin" / "python"
    if not python.exists():
        sys.exit(f"no vLLM env at {python.parent.parent} (make vllm-env)")
    deltas = [float(d) for d in args.deltas.split(",")]
    with tempfile.TemporaryDirectory(prefix="tiergate-vllm-quality-") as scratch:
        tmp = Path(scratch)
        model_dir = build_tiny_model(tmp / "model", train_steps=args.train_steps)
        config = json.loads((model_dir / "config.json").read_text())
        config["max_position_embeddings"] = 512
        (model_dir / "config.json").write_text(json.dumps(config))
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model.eval()
        vocab = int(model.config.vocab_size)

        rng = random.Random(0)
        stream = tokenizer(TINY_CORPUS)["input_ids"]
        starts = [rng.randrange(0, len(stream) - PROMPT) for _ in range(args.n)]
        prompt_ids = [stream[s : s + PROMPT] for s in starts]
        prompts = torch.tensor(prompt_ids)
        payloads = [rng.randrange(1 << 20) for _ in range(args.n)]
        groups = []
        for i, delta in enumerate(deltas):
            key = WatermarkKey(bytes([i + 1]) * 32)
            wm = WatermarkConfig.create(
                key, vocab, gamma=args.gamma, delta=delta, payload=PayloadSettings(payload_bits=20)
            )
            groups.append((wm, key))
        write_keyset(tmp / "keys.json", WatermarkKeySet(KeySetEntry(k, c) for c, k in groups))

        def score(gen: np.ndarray, marking: Marking | None) -> np.ndarray:
            return oracle(model, prompts, gen, marking=marking).nll  # type: ignore[no-any-return]

        # Local engine.
        local_plain = score(sample(model, prompts, args.tokens, seed=1), None)
        local: dict[float, np.ndarray] = {}
        markings = {}
        for delta, group in zip(deltas, groups, strict=True):
            markings[delta] = Marking((group,), payloads)
            gen = sample(model, prompts, args.tokens, seed=2, marking=markings[delta])
            local[delta] = score(gen, markings[delta])

        # vLLM with the plugin.
        wheel = build_wheel(tmp / "wheel")
        site = tmp / "site"
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
             str(wheel)],
            check=True,
        )  # fmt: skip
        port = free_port()
        server = _server(
            python, model_dir, tmp / "keys.json", site, port, tmp / "vllm.log", tmp / "t.json"
        )
        url = f"http://127.0.0.1:{port}"
        remote: dict[float, np.ndarray] = {}
        z_median: dict[float, float] = {}
        try:
            remote_plain = score(_vllm_samples(url, prompt_ids, args.tokens, None, payloads), None)
            for delta, (wm, key) in zip(deltas, groups, strict=True):
                gen = _vllm_samples(
                    url, prompt_ids, args.tokens, {"tiergate_key_id": key.key_id}, payloads
                )
                remote[delta] = score(gen, markings[delta])
                z_median[delta] = float(np.median([detect(row, wm, key).z_score for row in gen]))
        finally:
            server.terminate()
            server.wait(timeout=60)

    print(
        f"tiny Llama (vocab {vocab}, {args.train_steps} training steps), {args.n} prompts x "
        f"{args.tokens} tokens, gamma {args.gamma}, h=1, 20-bit payload, temperature 1"
    )
    print(f"plain PPL: local {ppl(local_plain):.2f}, vLLM {ppl(remote_plain):.2f}")
    print(
        "| delta | PPL ratio, local engine | PPL ratio, vLLM + plugin | median z (vLLM) "
        "| vLLM - local log-ratio (+-2 SE) | |"
    )
    print("|---|---|---|---|---|---|")
    for delta in deltas:
        d_local = local[delta] - local_plain
        d_vllm = remote[delta] - remote_plain
        band, ok = _band(d_vllm, d_local)
        print(
            f"| {delta:g} | {ppl_ratio(local[delta], local_plain)} | "
            f"{ppl_ratio(remote[delta], remote_plain)} | {z_median[delta]:.1f} | {band} | "
            f"{'matches' if ok else 'DIFFERS'} |"
        )


if __name__ == "__main__":
    main()
