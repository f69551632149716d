"""The cost of the streaming hold-back window against one scan of the finished text.

A 512-token completion (about 2,300 characters of English-like text) is streamed in
token-sized pieces through ``safety.stream.HoldBackStream`` and, for the baseline, scanned
once whole with the same checks. The checks are stand-ins with the packaged checks' shape
(a term list of 2,000 words matched per word, and a whole-text scorer); the real checks'
own cost is measured by their engineer's benchmark. Prints p50/p95 per completion and the
ratio streamed / whole, measured in one run. Also prints the worst hold (characters) seen.

    python bench/safety_stream.py [--window 256] [--runs 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

from safety.findings import Finding, ScanContext
from safety.policy import parse_policy
from safety.scanner import SafetyScanner
from safety.stream import HoldBackStream


class _Words:
    name = "wordlist"
    categories = frozenset({"hate"})

    def __init__(self, terms: set[str]) -> None:
        self.terms = terms

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        found = []
        start = 0
        for word in text.split(" "):
            if word.lower() in self.terms:
                found.append(Finding(self.name, "hate", 1.0, (start, start + len(word))))
            start += len(word) + 1
        return found


class _Scorer:
    name = "classifier"
    categories = frozenset({"hate"})

    def scan(self, text: str, context: ScanContext) -> Sequence[Finding]:
        return [Finding(self.name, "hate", min(1.0, text.count("x") / 100))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(19)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
             for _ in range(5000)]  # fmt: skip
    terms = set(rng.sample(vocab, 2000))
    policy = parse_policy(
        {
            "checks": ["wordlist", "classifier"],
            "rules": {"*": {"action": "redact"}},
            "hold_back_chars": args.window,
        }
    )
    scanner = SafetyScanner(policy, {"wordlist": _Words(terms), "classifier": _Scorer()})
    clean = [w for w in vocab if w not in terms]
    words = [rng.choice(clean) for _ in range(400)]
    text = " ".join(words)
    pieces = [text[i : i + 4] + "" for i in range(0, len(text), 4)][:512]  # ~token-sized
    text = "".join(pieces)
    whole, streamed = [], []
    worst_hold = 0
    for _ in range(args.runs):
        start = time.perf_counter()
        scanner.apply(text, scanner.scan(text))
        whole.append(time.perf_counter() - start)
        start = time.perf_counter()
        stream = HoldBackStream(scanner)
        for piece in pieces:
            stream.feed(piece)
            worst_hold = max(worst_hold, stream.held)
        stream.finish()
        streamed.append(time.perf_counter() - start)

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    print(f"text: {len(text)} chars in {len(pieces)} pieces; window {args.window}")
    print(f"whole text, one scan : p50 {p(whole, 50):.3f} ms  p95 {p(whole, 95):.3f} ms")
    print(f"streamed, hold-back  : p50 {p(streamed, 50):.3f} ms  p95 {p(streamed, 95):.3f} ms")
    print(f"ratio streamed/whole (p50): {p(streamed, 50) / p(whole, 50):.1f}x")
    print(f"most characters held at once: {worst_hold} (window {args.window})")


if __name__ == "__main__":
    main()
