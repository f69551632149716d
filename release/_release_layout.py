"""The names of a built release folder: its tier folders and the files next to them."""

from __future__ import annotations

__all__ = [
    "MODEL_CARD_FILE",
    "OPEN_TIER",
    "OPTIMIZED_TIER",
    "RELEASE_STATEMENT_FILE",
    "TERMS_FILE",
]

OPEN_TIER = "open"
OPTIMIZED_TIER = "optimized"
MODEL_CARD_FILE = "README.md"
RELEASE_STATEMENT_FILE = "release.dsse.json"
TERMS_FILE = "terms.md"
