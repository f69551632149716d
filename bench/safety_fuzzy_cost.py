"""What the word lists' second stage costs: one language's ``wordlist`` check with and without
it, interleaved, on 100 completions of 2,600 characters (the evaluation half of that language's
fortunes, seed 0), thread CPU time; three rounds with the per-word cache cold, three warm. ::

    python bench/safety_fuzzy_cost.py [--language ru]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safety_data import CACHE, clean_texts, split_clean
from safety_eval import completions

from safety.checks.wordlist import WordListCheck, load_fuzzy, load_wordlist
from safety.findings import ScanContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", choices=["en", "ru"], default="en")
    language = parser.parse_args().language
    rng = random.Random(0)
    docs = completions(split_clean(clean_texts(CACHE)[language])[1], rng, 100, 2600)
    rows = load_wordlist(language)
    fuzzy = load_fuzzy(language)
    assert fuzzy is not None
    both = WordListCheck.from_rows({language: rows}, {language: fuzzy})
    exact = WordListCheck.from_rows({language: rows})
    context = ScanContext(language=language, language_score=0.99)
    print("| per-word cache | exact p50 | exact p95 | with second stage p50 | p95 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label in ("cold (rounds 1-3)", "warm (rounds 4-6)"):
        alone: list[float] = []
        with_stage: list[float] = []
        for _ in range(3):
            for doc in docs:
                t0 = time.thread_time()
                exact.scan(doc, context)
                t1 = time.thread_time()
                both.scan(doc, context)
                t2 = time.thread_time()
                alone.append((t1 - t0) * 1e3)
                with_stage.append((t2 - t1) * 1e3)
        cells = []
        for series in (alone, with_stage):
            cells += [statistics.median(series), statistics.quantiles(series, n=100)[94]]
        print(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
