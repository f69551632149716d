"""Content Credentials end to end over HTTP on a trained small LM: manifests validate and resolve.

    apt-get install -y fortunes fortunes-min   # freely licensed English text; no hub downloads
    PYTHONPATH=. nice -n 19 python bench/c2pa_resolution_eval.py [--n 400] [--manifests 1000]
        [--null-windows 3000] [--train-steps 2400] [--train-seconds 3600] [--threads 1]

The model is the fortunes GPT-2 of bench/watermark_eval_lm.py (bench/fortunes_lm.py: same
recipe, tokenizer and cache in ~/.cache/tiergate/fortunes-lm/; trained on first use). It is
built into a signed release, published to a real gateway (its own uvicorn process, SQLite,
the local C2PA CA) and everything below goes through the gateway's HTTP API:

1. ``--manifests`` completions of 300 tokens (``POST /v1/completions``, ``n`` choices per call,
   temperature 1, prompts = the first 16 tokens of held-out fortunes); the tokenizer is
   published without an end-of-text token so every completion runs its full length. Each
   choice's Content Credential is read with c2pa-python's ``Reader`` (c2pa-rs) against the
   root from ``/.well-known/tiergate/c2pa-root.pem``: signature, chain, hard binding;
2. resolution by content with every piece of metadata stripped: the first ``--n`` texts alone,
   posted as ``text/plain`` to ``POST /c2pa/v1/matches/byContent``, clean, after 10% random
   token substitution (re-tokenized with the model's tokenizer, each token replaced by a
   uniformly random one with probability 0.1, decoded), and after each paste transformation
   (NFC, NFKC, whitespace collapse, smart quotes, line wrapping at 72 columns). Right: the
   only match is the choice's own manifest; wrong: any other manifest; each match's
   inclusion proof is checked against the log's signed checkpoint (``/log/vkey``);
3. the null: ``--null-windows`` 300-token windows of human-written fortunes (the corpus the
   watermark evaluation uses as its null) posted the same way; any manifest is a wrong match.

Prints a Markdown table (rates with 95% Wilson intervals) for docs/provenance.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import math
import random
import re
import sys
import tempfile
import textwrap
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fortunes_lm import CACHE, Recipe, build_tokenizer, load_corpus, token_stream, train_model
from generation_overhead import make_tokens, start_server
from watermark_eval_lm import HELD_OUT, PROMPT

from licensing.tlog.checkpoint import parse_checkpoint
from licensing.tlog.merkle import verify_inclusion
from licensing.tlog.note import Verifier, open_note

LENGTH = 300
REPO = "bench/fortunes"
MODEL = f"{REPO}@1.0.0"


def smart_quotes(text: str) -> str:
    text = re.sub(r'(^|[\s(\[])"', "\\1\u201c", text)
    text = text.replace('"', "\u201d")
    text = re.sub(r"(^|[\s(\[])'", "\\1\u2018", text)
    return text.replace("'", "\u2019")


PASTES: dict[str, Callable[[str], str]] = {
    "NFC": lambda t: unicodedata.normalize("NFC", t),
    "NFKC": lambda t: unicodedata.normalize("NFKC", t),
    "whitespace collapse": lambda t: re.sub(r"\s+", " ", t).strip(),
    "smart quotes": smart_quotes,
    "line wrap (72)": lambda t: textwrap.fill(t, 72),
}


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def substitute(text: str, tokenizer: Any, rng: np.random.Generator, vocab: int) -> str:
    """Each token of the text's re-tokenization replaced by a random one with probability 0.1."""
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    hit = rng.random(ids.shape) < 0.1
    swapped = np.where(hit, rng.integers(1, vocab, ids.shape), ids)  # 0 is the end token
    return str(tokenizer.decode(swapped.tolist(), skip_special_tokens=True))


def prepare(args: argparse.Namespace) -> tuple[Any, Any, list[str], list[str], dict[str, Any]]:
    """The model and its tokenizer, held-out fortunes, and human text in 300-token windows."""
    texts = load_corpus()
    random.Random(0).shuffle(texts)
    held_out, train_texts = texts[:HELD_OUT], texts[HELD_OUT:]
    digest = hashlib.sha256("\0".join(train_texts).encode()).hexdigest()[:10]
    recipe = Recipe(steps=args.train_steps)
    CACHE.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(
        train_texts, recipe.vocab, CACHE / f"tokenizer-v{recipe.vocab}-{digest}"
    )
    if args.model == "tests-tiny":
        model, tiny = tests_model()
        meta = {"steps": 30, "held_out_perplexity": math.nan}
        return model, tiny, held_out, human_windows(tiny, texts, args.null_windows), meta
    train, held = token_stream(train_texts, tokenizer), token_stream(held_out, tokenizer)
    model, meta = train_model(
        recipe, train, held, CACHE / recipe.name(digest), args.train_seconds, tokenizer.eos_token_id
    )
    if not meta.get("complete"):
        raise SystemExit("training not finished (time cap): run again to resume it")
    return model, tokenizer, held_out, human_windows(tokenizer, texts, args.null_windows), meta


def human_windows(tokenizer: Any, texts: list[str], count: int) -> list[str]:
    """Consecutive 300-token windows of the fortunes, in the model's own tokenizer, as text."""
    stream = token_stream(texts, tokenizer)
    return [
        str(tokenizer.decode(stream[w * LENGTH : (w + 1) * LENGTH].tolist()))
        for w in range(min(count, len(stream) // LENGTH))
    ]


def tests_model() -> tuple[Any, Any]:
    """The tests' trained tiny Llama (release.testing, 30 steps on its corpus), allowed 512
    positions as in the generation tests (RoPE: the limit is a config field)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from release.testing import build_tiny_model

    path = build_tiny_model(Path(tempfile.mkdtemp(prefix="tiny-")) / "model", train_steps=30)
    model = AutoModelForCausalLM.from_pretrained(str(path))
    model.config.max_position_embeddings = 512
    return model, AutoTokenizer.from_pretrained(str(path))


def build(root: Path, model: Any, tokenizer: Any, *, allow_unreliable: bool) -> Path:
    """The model as a signed release folder; the tokenizer without an end token, so the
    gateway's sampler never stops a completion early (a fortune runs on into the next)."""
    from licensing.keys import PrivateKey
    from licensing.statements import ApprovalPolicy
    from release.build import BuildOptions, build_release

    folder = root / "model"
    model.generation_config.eos_token_id = None
    model.save_pretrained(str(folder))
    tokenizer.eos_token = None
    tokenizer.save_pretrained(str(folder))
    key = PrivateKey.generate()
    options = BuildOptions(
        repo_id=REPO,
        version="1.0.0",
        optimize="bf16",
        approval=ApprovalPolicy(),
        allow_unreliable_text_detection=allow_unreliable,
    )
    build_release(
        folder, root / "out", key=key, options=options, now=datetime.now(UTC), show_progress=False
    )
    (root / "pub.pem").write_bytes(key.public_key.to_pem())
    return root / "out"


class Log:
    """The gateway's transparency log as a reader sees it: signed checkpoints, proofs."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.verifier = Verifier.from_vkey(http.get("/log/vkey").text.strip())

    def size(self) -> int:
        note = open_note(self.http.get("/log/checkpoint").text, [self.verifier])
        return parse_checkpoint(note.text).size

    def wait_for(self, size: int, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while self.size() < size:
            if time.monotonic() > deadline:
                raise SystemExit(f"the log did not integrate {size} entries")
            time.sleep(0.5)

    def proof_valid(self, proof: dict[str, Any] | None) -> bool:
        if proof is None:
            return False
        try:
            note = open_note(proof["checkpoint"], [self.verifier])
            checkpoint = parse_checkpoint(note.text)
            if checkpoint.size != proof["tree_size"]:
                return False
            verify_inclusion(
                bytes.fromhex(proof["leaf_hash"]),
                proof["index"],
                proof["tree_size"],
                [bytes.fromhex(h) for h in proof["inclusion_path"]],
                checkpoint.root_hash,
            )
        except Exception:  # any failure to verify is "no valid proof"
            return False
        return True


def generate(
    http: httpx.Client, prompts: list[str], total: int, choices: int
) -> list[tuple[str, dict[str, Any]]]:
    """``total`` 300-token completions: (text, Content Credential) per choice."""
    out: list[tuple[str, dict[str, Any]]] = []
    for call in range(math.ceil(total / choices)):
        body = {
            "model": MODEL,
            "prompt": prompts[call % len(prompts)],
            "max_tokens": LENGTH,
            "n": choices,
            "temperature": 1.0,
        }
        response = http.post("/v1/completions", json=body)
        if response.is_error:
            raise SystemExit(f"completion refused: {response.status_code} {response.text}")
        made = response.json()
        credentials = {c["choice_index"]: c for c in made["tiergate"]["content_credentials"]}
        for choice in made["choices"]:
            credential = credentials[choice["index"]] | {"log_index": made["tiergate"]["log_index"]}
            out.append((choice["text"], credential))
        if call % 25 == 0:
            print(f"  {len(out)} completions", flush=True)
    return out[:total]


def validate(made: list[tuple[str, dict[str, Any]]], root_pem: str) -> int:
    """How many manifests c2pa-rs reads as Trusted over their text (chain to ``root_pem``)."""
    import c2pa

    settings = {"trust": {"trust_anchors": root_pem}, "verify": {"verify_trust": True}}
    context = c2pa.Context(c2pa.Settings.from_dict(settings))
    trusted = 0
    for text, credential in made:
        store = base64.b64decode(credential["manifest"])
        reader = c2pa.Reader("text/plain", io.BytesIO(text.encode()), store, context)
        report = json.loads(reader.json())
        trusted += (
            reader.get_validation_state() == "Trusted"
            and report["active_manifest"] == credential["manifest_id"]
        )
        reader.close()
    return trusted


def resolve(http: httpx.Client, text: str) -> list[dict[str, Any]]:
    response = http.post(
        "/c2pa/v1/matches/byContent",
        content=text.encode("utf-8"),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    response.raise_for_status()
    matches: list[dict[str, Any]] = response.json()["matches"]
    return matches


class Tally:
    """Right / wrong / none for one row, and wrong matches whose proof verifies."""

    def __init__(self, name: str) -> None:
        self.name, self.right, self.wrong, self.none, self.n, self.wrong_proved = (
            name,
            0,
            0,
            0,
            0,
            0,
        )

    def add(self, matches: list[dict[str, Any]], truth: str | None, log: Log) -> None:
        self.n += 1
        ids = [m["manifestId"] for m in matches]
        wrong = [m for m in matches if m["manifestId"] != truth]
        if wrong:
            self.wrong += 1
            self.wrong_proved += any(
                log.proof_valid(m["tiergate"]["inclusion_proof"]) for m in wrong
            )
        elif ids == [truth] and log.proof_valid(matches[0]["tiergate"]["inclusion_proof"]):
            self.right += 1
        else:
            self.none += 1

    def row(self) -> str:
        def cell(k: int) -> str:
            lo, hi = wilson(k, self.n)
            return f"{k / self.n:.3f} ({lo:.3f}-{hi:.3f})"

        return (
            f"| {self.name} | {self.n} | {cell(self.right)} | {cell(self.wrong)} "
            f"| {self.wrong_proved} | {cell(self.none)} |"
        )


def run_rows(
    http: httpx.Client, log: Log, rows: dict[str, list[tuple[str, str | None]]], clients: int
) -> list[Tally]:
    tallies = []
    with ThreadPoolExecutor(clients) as pool:
        for name, cases in rows.items():
            tally = Tally(name)
            for (_, truth), matches in zip(
                cases, pool.map(lambda c: resolve(http, c[0]), cases), strict=True
            ):
                tally.add(matches, truth, log)
                if tally.n % 500 == 0:
                    print(f"  {tally.row()}", flush=True)
            print(f"{tally.row()}", flush=True)
            tallies.append(tally)
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="completions resolved")
    parser.add_argument("--manifests", type=int, default=1000, help="completions signed + read")
    parser.add_argument("--null-windows", type=int, default=3000)
    parser.add_argument("--choices", type=int, default=8, help="n per completion call")
    parser.add_argument("--clients", type=int, default=2, help="concurrent resolution requests")
    parser.add_argument(
        "--model",
        choices=("fortunes", "tests-tiny"),
        default="fortunes",
        help="the fortunes GPT-2 (trained here, cached) or the tests' tiny Llama",
    )
    parser.add_argument("--train-steps", type=int, default=Recipe.steps)
    parser.add_argument("--train-seconds", type=float, default=3600)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both processes")
    parser.add_argument(
        "--allow-unreliable-text-detection",
        action="store_true",
        help="publish even if the tokenizer round trip is under 0.9 (an under-trained model)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, tokenizer, held_out, human_windows, meta = prepare(args)
    vocab = int(model.config.vocab_size)
    prompts = [
        tokenizer.decode(ids[:PROMPT])
        for ids in (tokenizer.encode(t) for t in held_out)
        if len(ids) >= PROMPT
    ]
    root = Path(tempfile.mkdtemp(prefix="tiergate-c2pa-eval-"))
    out = build(root, model, tokenizer, allow_unreliable=args.allow_unreliable_text_detection)
    pub, dev = make_tokens(root / "data")
    limits = (
        "generation_max_n=64, generation_max_tokens=512, rate_limit_soft_binding_per_address="
        "10**9, rate_limit_detections_per_account=10**9, rate_limit_window_seconds=1"
    )
    url, server = start_server(root / "data", args.threads, limits)
    try:
        from release.upload import publish_release_folder

        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {pub}"}) as http:
            http.post("/api/keys", json={"pem": (root / "pub.pem").read_text()}).raise_for_status()
            publish_release_folder(out, client=http)
        headers = {"Authorization": f"Bearer {dev}"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            print(f"gateway up, release published ({time.perf_counter() - start:.0f} s)")
            made = generate(http, prompts, max(args.manifests, args.n), args.choices)
            print(f"{len(made)} completions ({time.perf_counter() - start:.0f} s)", flush=True)
            root_pem = http.get("/.well-known/tiergate/c2pa-root.pem").text
            trusted = validate(made[: args.manifests], root_pem)
            print(f"manifests: {trusted}/{args.manifests} Trusted", flush=True)
            log = Log(http)
            log.wait_for(max(c["log_index"] for _, c in made) + 1)
            texts = [(t, c["manifest_id"]) for t, c in made[: args.n]]
            rng = np.random.default_rng(1)
            rows: dict[str, list[tuple[str, str | None]]] = {
                "text as returned": texts,
                "10% random token substitution": [
                    (substitute(t, tokenizer, rng, vocab), m) for t, m in texts
                ],
            }
            for name, paste in PASTES.items():
                changed = sum(paste(t) != t for t, _ in texts)
                rows[f"paste: {name} (changed {changed}/{len(texts)})"] = [
                    (paste(t), m) for t, m in texts
                ]
            rows["human text (fortunes, 300-token windows)"] = [(w, None) for w in human_windows]
            tallies = run_rows(http, log, rows, args.clients)
    finally:
        server.terminate()
        server.wait(30)
    print()
    print(
        f"model: {meta['steps']} training steps, held-out perplexity "
        f"{meta['held_out_perplexity']:.1f}; {len(made)} completions of {LENGTH} tokens"
    )
    print(f"manifests Trusted by c2pa-python's Reader: {trusted} of {args.manifests}")
    print("| text posted to byContent | n | right manifest | wrong manifest "
          "| wrong with a valid proof | none |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for tally in tallies:
        print(tally.row())
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
