"""How many of Surge AI's "Severe" English terms spelled with a leetspeak character the
*shipped* English list flags when inserted in clean text (in-sample: the list is built from
Surge AI's rows too, so this shows what literal rows add to the shipped check, not recall on
unseen terms; that is ``safety_eval.py --parts recall``)::

    python bench/safety_literal_probe.py --cache <cache> --seed 0
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safety_data import CACHE, clean_texts, severe_english_terms, split_clean
from safety_eval import flagged, insert, make_scanner

from safety.checks._fold import LEET_CHARS
from safety.checks.wordlist import WordListCheck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    texts = split_clean(clean_texts(args.cache)["en"])[1]
    terms = [t for t in severe_english_terms(args.cache) if LEET_CHARS.intersection(t)]
    scan = make_scanner(WordListCheck(languages=("en",)), None)
    missed = [
        t for t in terms if not flagged(scan(insert(rng.choice(texts), t, rng)), args.threshold)
    ]
    print(f"Severe terms spelled with a leetspeak character: {len(terms)}")
    print(f"flagged by the shipped English list: {len(terms) - len(missed)}")
    print(f"missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
