"""Content Credentials end to end on a small trained LM: manifests validate, text resolves.

    apt-get install -y fortunes     # freely licensed English text; no hub downloads
    nice -n 19 python bench/c2pa_resolution_eval.py [--n 200] [--manifests 1000]
                                                   [--train-steps 2400] [--train-seconds 3600]

Reuses the model, tokenizer and sampler of bench/watermark_eval_lm.py (the same cache in
~/.cache/tiergate/fortunes-lm/; fewer ``--train-steps`` train a weaker model quicker). Then:

1. ``--n`` held-out prompts get 300-token continuations, each watermarked with its own random
   20-bit call tag (the payload the gateway embeds), and detokenized to text;
2. ``--manifests`` C2PA manifests are signed the gateway's way (ProvenanceService, the local
   CA) over those texts (cycled, each with its own call id and tag) and every one is read back
   with c2pa-python's Reader (c2pa-rs) against the root: signature, chain, hard binding;
3. resolution by content with every piece of metadata stripped: the text alone is re-tokenized,
   the call tag decoded (CRC-checked, strict p <= 1e-6 as /c2pa/v1/matches/byContent uses) and
   looked up by soft-binding value in the table of signed manifests; right / wrong / none, for
   the clean text, after 10% random token substitution, and after each paste transformation
   (NFC, NFKC, whitespace collapse, smart quotes, line wrapping at 72 columns);
4. the null: 300-token windows of human-written fortunes (the corpus the watermark evaluation
   uses as its null) resolved the same way; any manifest returned is a wrong match.

Prints a Markdown table for docs/provenance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
import tempfile
import textwrap
import time
import unicodedata
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fortunes_lm import CACHE, Recipe, build_tokenizer, load_corpus, token_stream, train_model
from sqlalchemy.engine import Engine
from watermark_eval import KEY
from watermark_eval_lm import HELD_OUT, PROMPT, Marking, attack, sample

from gateway.db.timeutil import utcnow
from gateway.services.provenance import ProvenanceService, binding_value, manifest_id_for
from gateway.services.provenance_certs import ensure_local_ca, load_signing_credentials
from gateway.services.provenance_verify import verify_text_credential
from watermark import PayloadSettings, WatermarkConfig, decode_payload

LENGTH = 300
ALPHA = 1e-6  # the resolution API's strict level
KEY_ID = hashlib.sha256(b"bench watermark key").hexdigest()[:16]  # names the key in bindings


def smart_quotes(text: str) -> str:
    text = re.sub(r'(^|[\s(\[])"', "\\1\u201c", text)
    text = text.replace('"', "\u201d")
    text = re.sub(r"(^|[\s(\[])'", "\\1\u2018", text)
    return text.replace("'", "\u2019")


PASTES = {
    "NFC": lambda t: unicodedata.normalize("NFC", t),
    "NFKC": lambda t: unicodedata.normalize("NFKC", t),
    "whitespace collapse": lambda t: re.sub(r"\s+", " ", t).strip(),
    "smart quotes": smart_quotes,
    "line wrap (72)": lambda t: textwrap.fill(t, 72),
}


def resolve(ids: Any, config: WatermarkConfig, table: dict[str, str]) -> str | None:
    """The manifest id the text resolves to (None: no match), as byContent decides."""
    if len(ids) == 0:
        return None
    found = decode_payload(np.asarray(ids), config, KEY, alpha=ALPHA)
    if not found.valid or found.payload is None or found.p_value > ALPHA:
        return None
    return table.get(binding_value(KEY_ID, int(found.payload)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="completions resolved")
    parser.add_argument("--manifests", type=int, default=1000, help="manifests signed + read")
    parser.add_argument("--null-windows", type=int, default=2000)
    parser.add_argument("--train-steps", type=int, default=Recipe.steps)
    parser.add_argument("--train-seconds", type=float, default=3600)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    texts = load_corpus()
    random.Random(0).shuffle(texts)
    held_out, train_texts = texts[:HELD_OUT], texts[HELD_OUT:]
    digest = hashlib.sha256("\0".join(train_texts).encode()).hexdigest()[:10]
    recipe = Recipe(steps=args.train_steps)
    CACHE.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(
        train_texts, recipe.vocab, CACHE / f"tokenizer-v{recipe.vocab}-{digest}"
    )
    train, held_stream = token_stream(train_texts, tokenizer), token_stream(held_out, tokenizer)
    model, meta = train_model(
        recipe,
        train,
        held_stream,
        CACHE / recipe.name(digest),
        args.train_seconds,
        tokenizer.eos_token_id,
    )
    model.generation_config.eos_token_id = None
    encoded = [tokenizer.encode(t) for t in held_out]
    prompts = torch.tensor([ids[:PROMPT] for ids in encoded if len(ids) >= PROMPT][: args.n])
    n = prompts.shape[0]
    vocab = int(model.config.vocab_size)
    config = WatermarkConfig.create(
        KEY, vocab, tokenizer=tokenizer, payload=PayloadSettings(payload_bits=20)
    )
    rng = np.random.default_rng(7)
    tags = [int(p) for p in rng.integers(0, 1 << 20, n)]
    seqs = sample(model, prompts, LENGTH, seed=11, marking=Marking(((config, KEY),), tags))
    completions = [tokenizer.decode(row.tolist()) for row in seqs]
    print(f"model ready, {n} completions sampled ({time.perf_counter() - start:.0f} s)")

    # 1. Manifests: signed the gateway's way, read back by c2pa-rs against the root.
    now = utcnow()
    keys_dir = Path(tempfile.mkdtemp(prefix="c2pa-eval-"))
    credentials = load_signing_credentials(*ensure_local_ca(keys_dir, now), now=now)
    service = ProvenanceService(cast(Engine, None), credentials, "https://gateway.example")
    table: dict[str, str] = {}
    truth: list[str] = []
    valid = 0
    sign_seconds = 0.0
    for i in range(max(args.manifests, n)):
        text = completions[i % n]
        tag = tags[i] if i < n else (1 << 20) + i  # extra manifests: tags no text carries
        call = f"cmpl-eval-{i}"
        manifest_id = manifest_id_for(call, 0)
        t0 = time.perf_counter()
        manifest = service._manifest(
            manifest_id=manifest_id,
            call_id=call,
            choice_index=0,
            log_index=i,
            model="bench/fortunes@1:open",
            release_digest="0" * 64,
            key_id=KEY_ID,
            payload=tag,
            text_sha256=hashlib.sha256(text.encode()).hexdigest(),
            logged_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        store = service.sign_text(manifest, text)
        sign_seconds += time.perf_counter() - t0
        if i < args.manifests:
            checked = verify_text_credential(store, text, trust_anchor=credentials.root_pem)
            valid += checked.state == "Trusted"
        table[binding_value(KEY_ID, tag)] = manifest_id
        if i < n:
            truth.append(manifest_id)
    print(f"manifests: {valid}/{args.manifests} validate ({time.perf_counter() - start:.0f} s)")

    # 2. Resolution from the text alone.
    rows: list[tuple[str, float, float, float]] = []

    def score(name: str, id_lists: list[Any]) -> None:
        got = [resolve(ids, config, table) for ids in id_lists]
        right = sum(g == t for g, t in zip(got, truth, strict=True)) / n
        wrong = sum(g is not None and g != t for g, t in zip(got, truth, strict=True)) / n
        rows.append((name, right, wrong, sum(g is None for g in got) / n))
        print(f"{name}: right {right:.3f} wrong {wrong:.3f}", flush=True)

    score("token ids as sampled (no text)", list(seqs))
    score("text, re-tokenized", [tokenizer.encode(t) for t in completions])
    substituted = attack(seqs, "substitution", 0.1, vocab, np.random.default_rng(1))
    score(
        "10% random token substitution",
        [tokenizer.encode(tokenizer.decode(list(map(int, s)))) for s in substituted],
    )
    for name, paste in PASTES.items():
        changed = sum(paste(t) != t for t in completions)
        score(
            f"paste: {name} (changed {changed}/{n})",
            [tokenizer.encode(paste(t)) for t in completions],
        )

    # 3. The null: human-written text (the fortunes corpus, its own stream) never resolves.
    human = torch.cat([held_stream, train]).numpy()
    windows = min(args.null_windows, len(human) // LENGTH)
    wrong_null = sum(
        resolve(human[w * LENGTH : (w + 1) * LENGTH], config, table) is not None
        for w in range(windows)
    )
    elapsed = time.perf_counter() - start
    print()
    print(f"model: {meta['steps']} of {recipe.steps} training steps; {n} completions")
    print("| measure | right manifest | wrong manifest | none |")
    print("|---|---|---|---|")
    for name, right, wrong, none in rows:
        print(f"| {name} | {right:.3f} | {wrong:.3f} | {none:.3f} |")
    print(
        f"\nmanifests validating with c2pa-python's Reader: {valid} of {args.manifests}; "
        f"mean sign time {sign_seconds / max(args.manifests, n) * 1000:.1f} ms"
    )
    print(f"null: {wrong_null} wrong matches over {windows} human-written 300-token windows")
    print(f"total {elapsed:.0f} s")


if __name__ == "__main__":
    main()
