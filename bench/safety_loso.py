"""Leave-one-source-out recall of the word lists (issue 19: recall "using checks not built from
the list being tested").

For a test source S of a language, the ``wordlist`` check is rebuilt by the same curation
(``safety_data.shipped_rows``) from every source except S's *family*: S itself and every
source that holds, or is held by, a family member at >= 90% of its folded terms (``safetext``
bundles LDNOOBW and ``badwords-list``; ``better-profanity`` bundles ``badwords-list``), closed
transitively, so that no copy of S's list is left in the check; the machine translations of a
language (``safety_sources.MACHINE_TRANSLATED``) count as one list. Each of S's terms (folded
duplicates once) is inserted into a clean text of the evaluation half; *flagged* as in
``safety_eval``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Mapping, Sequence

from safety_data import severe_english_terms, shipped_fuzzy, shipped_rows
from safety_sources import MACHINE_TRANSLATED, SOURCES, all_sources

from safety.checks._fold import fold_term
from safety.checks.classifier import ClassifierCheck
from safety.checks.wordlist import WordListCheck
from safety.findings import Finding

CONTAINED = 0.9


def family(sources: Mapping[str, Sequence[str]], source: str) -> frozenset[str]:
    """``source`` and every source sharing >= 90% of either list with a member, transitively."""
    folded = {name: {fold_term(t) for t in terms} for name, terms in sources.items()}
    members = {source}
    grew = True
    while grew:
        grew = False
        for name, terms in folded.items():
            if name in members or not terms:
                continue
            for member in list(members):
                shared = len(terms & folded[member])
                if shared >= CONTAINED * min(len(terms), len(folded[member]) or 1):
                    members.add(name)
                    grew = True
                    break
    return frozenset(members)


def translation_family(
    sources: Mapping[str, Sequence[str]], source: str, language: str
) -> frozenset[str]:
    """:func:`family`, where the machine translations of a language count as one list: their
    English originals are one family (``badwords-list``, which Google's list and LDNOOBW's
    English are in too), so one translation is not a check independent of another."""
    members = family(sources, source)
    translated = MACHINE_TRANSLATED.get(language, frozenset()) & sources.keys()
    if members & translated:
        members = members.union(*(family(sources, name) for name in translated))
    return members


def loso_table(
    make_scanner: Callable[[WordListCheck, ClassifierCheck | None], Callable[[str], list[Finding]]],
    recall: Callable[..., tuple[float, int, list[str]]],
    dedupe: Callable[[Sequence[str]], list[str]],
    classifier: ClassifierCheck,
    corpora: dict[str, list[str]],
    languages: list[str],
    rng: random.Random,
    args: argparse.Namespace,
) -> None:
    print("## Recall on insertions, leave one source out\n")
    print("| language | test source | check built from | terms | recall | missed (first few) |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    for language in languages:
        sources = all_sources(args.cache, language)
        pooled_hit = pooled_n = 0
        tests: list[tuple[str, str, list[str]]] = []
        if language == "en":
            tests.append(("surge", "surge, Severe", severe_english_terms(args.cache)))
        tests += [(s, s, list(terms)) for s, terms in sources.items()]
        for source, label, terms in tests:
            left_out = translation_family(sources, source, language)
            kept = [s for s in SOURCES[language] if s not in left_out]
            if not kept:
                print(f"| {language} | {label} | (no other source) | | | |")
                continue
            rows = shipped_rows(args.cache, language, left_out)
            fuzzy = shipped_fuzzy(args.cache, language, rows) if args.fuzzy else {}
            check = WordListCheck.from_rows({language: rows}, fuzzy)
            scan = make_scanner(check, classifier if language == "en" else None)
            r, n, missed = recall(scan, dedupe(terms), corpora[language], rng, args.threshold)
            if label == source:
                pooled_hit += round(r * n)
                pooled_n += n
            shown = ", ".join(missed[: args.show])
            print(f"| {language} | {label} | {', '.join(kept)} | {n} | {r:.3f} | {shown} |")
        if pooled_n:
            print(
                f"| {language} | all sources pooled | | {pooled_n} |"
                f" {pooled_hit / pooled_n:.3f} | |"
            )
