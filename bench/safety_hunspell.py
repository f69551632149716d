"""Every word form of a Hunspell dictionary (stems expanded by the affix file's suffix rules).

Debian ships Russian's ordinary words only as ``hunspell-ru`` (``ru_RU.dic``: 146,000 stems
with affix flags; ``ru_RU.aff``: suffix rules), not as a plain word list. The second stage's
allow-list needs the inflected forms ("рубля", "корабля"), so this expands them: for each stem,
the stem itself and, for each of its flags, every ``SFX`` rule whose condition holds at the
stem's end (strip the rule's letters, add its affix). Only what ``ru_RU.aff`` uses is read:
single-letter flags, ``SFX`` rules with cross-product, no continuation classes, no ``PFX``; any
other directive (or a continuation class) is refused rather than expanded wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

_KNOWN = {"SET", "TRY", "SFX"}


def _suffix_rules(aff: str) -> dict[str, list[tuple[str, str, re.Pattern[str]]]]:
    """``flag -> [(strip, add, condition at the end)]`` from an affix file's text."""
    rules: dict[str, list[tuple[str, str, re.Pattern[str]]]] = {}
    for number, line in enumerate(aff.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] not in _KNOWN:
            raise ValueError(f"line {number}: unsupported directive {fields[0]!r}")
        if fields[0] != "SFX" or len(fields) == 4:
            continue  # SET / TRY, or a rule group's header
        if len(fields) < 5 or "/" in fields[3]:
            raise ValueError(f"line {number}: unsupported suffix rule")
        flag, strip, add, condition = fields[1], fields[2], fields[3], fields[4]
        strip = "" if strip == "0" else strip
        add = "" if add == "0" else add
        pattern = re.compile(("" if condition == "." else condition) + "$")
        rules.setdefault(flag, []).append((strip, add, pattern))
    return rules


def expand(dic: str, aff: str) -> Iterator[str]:
    """Every form of every stem of ``dic`` (a ``.dic`` file's text; first line: the count)."""
    rules = _suffix_rules(aff)
    for line in dic.splitlines()[1:]:
        stem, _, flags = line.strip().partition("/")
        if not stem:
            continue
        yield stem
        for flag in flags:
            for strip, add, condition in rules.get(flag, ()):
                if stem.endswith(strip) and condition.search(stem):
                    yield stem[: len(stem) - len(strip)] + add


def dictionary_forms(folder: Path, name: str) -> list[str]:
    """The expanded forms of ``folder/name.dic`` with ``folder/name.aff``."""
    dic = (folder / f"{name}.dic").read_text("utf-8")
    aff = (folder / f"{name}.aff").read_text("utf-8")
    return list(expand(dic, aff))
