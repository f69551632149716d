"""Offline output-safety checks and the per-release policy that decides what they do.

A pure library (no gateway, no web stack): the checks run on text with data that installs
from the package registries; :mod:`safety.policy` is what a publisher signs into a release.
"""

from __future__ import annotations

from safety.errors import (
    CheckFailedError,
    CheckUnavailableError,
    SafetyError,
    SafetyPolicyError,
    UnknownCheckError,
)
from safety.findings import HAZARD_CATEGORIES, Check, Finding, ScanContext
from safety.registry import KNOWN_CHECKS, known_check_names, load_check

__all__ = [
    "HAZARD_CATEGORIES",
    "KNOWN_CHECKS",
    "Check",
    "CheckFailedError",
    "CheckUnavailableError",
    "Finding",
    "SafetyError",
    "SafetyPolicyError",
    "ScanContext",
    "UnknownCheckError",
    "known_check_names",
    "load_check",
]
