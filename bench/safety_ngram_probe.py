"""Would a character n-gram model find the words the lists lack? A probe, leave one source out.

For each test source S (as in ``safety_loso.py``) a linear model over hashed character 3-5-grams
of single folded words is trained (seeded) on: positives, the words of every source outside
S's family; negatives, the words of the curation half of every clean corpus and of the
language's Debian spelling dictionary. A text is flagged when any of its words scores at or
above a threshold chosen on the *curation* half so that at most ``--fpr`` of those texts are
flagged. Reported: S's recall (a term is found when one of its words reaches the threshold) and
the flag rate on the evaluation half, alone and together with the word-list check rebuilt
without S's family (flagged by either). Nothing here is shipped; ``docs/safety.md`` says why.

    python bench/safety_ngram_probe.py --seed 0
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safety_data import (
    CACHE,
    DICTIONARIES,
    clean_texts,
    severe_english_terms,
    shipped_rows,
    split_clean,
)
from safety_loso import family
from safety_sources import all_sources

from safety.checks._fold import fold_term
from safety.checks.wordlist import WordListCheck
from safety.findings import ScanContext

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    return _WORD.findall(fold_term(text))


def main() -> None:
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fpr", type=float, default=0.01)
    parser.add_argument("--negatives", type=int, default=200_000)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    corpora = clean_texts(args.cache)
    halves = {lang: split_clean(texts) for lang, texts in corpora.items()}
    clean_words = sorted({w for cur, _ in halves.values() for t in cur for w in words(t)})
    vectorizer = HashingVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), n_features=2**20, alternate_sign=False
    )
    print(
        "| language | test source | trained on | terms | threshold | recall | FPR (eval) |"
        " recall, with lists | FPR, with lists |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    tests = [("en", "surge"), ("fr", "french_badwords"), ("ru", "russian_bad_words")]
    for language, source in tests:
        sources = all_sources(args.cache, language)
        left_out = family(sources, source)
        positives = sorted(
            {
                w
                for s, terms in sources.items()
                if s not in left_out
                for t in terms
                for w in words(t)
            }
        )
        negatives = list(clean_words)
        if language in DICTIONARIES:
            path = args.cache / "root" / "usr" / "share" / "dict" / DICTIONARIES[language]
            negatives += [fold_term(w) for w in path.read_text("utf-8").split()]
        negatives = sorted(set(negatives) - set(positives))
        if len(negatives) > args.negatives:
            negatives = list(rng.choice(negatives, args.negatives, replace=False))
        x = vectorizer.transform(positives + negatives)
        y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
        model = SGDClassifier(
            loss="log_loss", alpha=1e-6, class_weight="balanced", random_state=args.seed
        )
        model.fit(x, y)

        def text_score(text: str, model: SGDClassifier = model) -> float:
            ws = words(text)
            return float(model.decision_function(vectorizer.transform(ws)).max()) if ws else -1e9

        curation, evaluation = halves[language]
        scores = np.sort([text_score(t) for t in curation[:2000]])
        threshold = float(scores[int(np.ceil(len(scores) * (1 - args.fpr))) - 1]) + 1e-9
        lists = WordListCheck.from_rows({language: shipped_rows(args.cache, language, left_out)})
        context = ScanContext(language=language, language_score=0.99)
        by_model = [text_score(t) >= threshold for t in evaluation[:2000]]
        by_lists = [bool(lists.scan(t, context)) for t in evaluation[:2000]]
        fpr = np.mean(by_model)
        fpr_both = np.mean(np.logical_or(by_model, by_lists))
        terms = severe_english_terms(args.cache) if source == "surge" else sources[source]
        terms = sorted({fold_term(t) for t in terms if words(t)})
        model_hits = [text_score(t) >= threshold for t in terms]
        list_hits = [bool(lists.scan(t, context)) for t in terms]
        found = np.mean(model_hits)
        found_both = np.mean(np.logical_or(model_hits, list_hits))
        label = "surge, Severe" if source == "surge" else source
        kept = ", ".join(s for s in sources if s not in left_out)
        print(
            f"| {language} | {label} | {kept} | {len(terms)} | {threshold:.2f} |"
            f" {found:.3f} | {fpr:.4f} | {found_both:.3f} | {fpr_both:.4f} |"
        )


if __name__ == "__main__":
    main()
