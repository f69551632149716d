"""The checks a policy may name, and where their implementations live.

Implementations are imported lazily (``module:Class``), so validating a policy never loads a
classifier. ``guard`` has no implementation here: a guard model is an ordinary tiergate
release, so the gateway verifies and loads it and hands the check to the scanner.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from safety.errors import CheckUnavailableError, UnknownCheckError
from safety.findings import Check

__all__ = ["EXTERNAL_CHECKS", "KNOWN_CHECKS", "known_check_names", "load_check"]

KNOWN_CHECKS: Mapping[str, str] = {
    "langid": "safety.checks.langid:LanguageIdCheck",
    "wordlist": "safety.checks.wordlist:WordListCheck",
    "classifier": "safety.checks.classifier:ClassifierCheck",
}
"""Checks that ship in this library: name -> ``module:Class`` (no-argument constructor)."""

EXTERNAL_CHECKS: frozenset[str] = frozenset({"guard"})
"""Checks a policy may name whose implementation the host supplies (a verified guard model)."""


def known_check_names() -> frozenset[str]:
    """Every name a policy's ``checks`` may list."""
    return frozenset(KNOWN_CHECKS) | EXTERNAL_CHECKS


def load_check(name: str) -> Check:
    """Construct the packaged check ``name``.

    Raises :class:`UnknownCheckError` for a name not in :data:`KNOWN_CHECKS` (including
    ``guard``, which the host builds) and :class:`CheckUnavailableError` when its module
    cannot be imported here.
    """
    target = KNOWN_CHECKS.get(name)
    if target is None:
        raise UnknownCheckError(f"no packaged safety check named {name!r}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CheckUnavailableError(f"safety check {name!r} cannot load: {exc}") from exc
    check: Check = getattr(module, class_name)()
    return check
