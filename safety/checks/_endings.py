"""The inflectional endings the word lists' second stage strips to compare stems (Russian).

Kept apart because the endings are Cyrillic data whose letters look like Latin ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from safety.checks._fold import fold_term

__all__ = ["STEM_ENDINGS"]

# The second stage's endings where they differ from the exact stage's suffixes: a Russian word
# is listed in one or a few of its forms, so the stage compares stems (the word minus one of
# these noun, adjective, verb and reflexive endings) with the listed words' stems. Folded like
# text ("й" -> "и", "ё" -> "е").
STEM_ENDINGS: Mapping[str, tuple[str, ...]] = {
    "ru": tuple(
        fold_term(ending)
        for ending in (
            # nouns
            "а", "я", "о", "е", "ы", "и", "у", "ю", "ь", "ом", "ем", "ой", "ей", "ою", "ею",
            "ам", "ям", "ами", "ями", "ах", "ях", "ов", "ев", "ью", "ье", "ья", "ьи", "ьев",
            # adjectives (full, short, comparative)
            "ый", "ий", "ая", "яя", "ое", "ее", "ые", "ие", "ого", "его", "ому", "ему", "ым",
            "им", "ую", "юю", "ых", "их", "ыми", "ими", "ен", "на", "но", "ны", "ней",
            # verbs (infinitive, present, past, imperative, reflexive)
            "ть", "ти", "ешь", "ет", "ете", "ут", "ют", "ат", "ят", "ишь", "ит", "ите",
            "ал", "ала", "ало", "али", "ил", "ила", "ило", "или", "ел", "ела", "ело", "ели",
            "ься", "ся", "сь", "ться", "тся", "лся", "лась", "лось", "лись", "ешься", "ется",
            "емся", "етесь", "ются", "утся", "ится", "ятся", "атся", "ьте",
        )
    ),
}  # fmt: skip
