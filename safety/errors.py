"""Errors of the safety library.

Exception tree (every class of the part; each line: class, ``code``, meaning)::

    SafetyError                  safety_error: root; every failure of this part
    +-- SafetyPolicyError        safety_policy_invalid: a policy is malformed
    |   +-- UnknownCheckError    safety_check_unknown: a policy names a check that does not exist
    +-- CheckUnavailableError    safety_check_unavailable: a check's package or data is missing
    +-- CheckFailedError         safety_check_failed: a check raised while scanning
"""

from __future__ import annotations

__all__ = [
    "CheckFailedError",
    "CheckUnavailableError",
    "SafetyError",
    "SafetyPolicyError",
    "UnknownCheckError",
]


class SafetyError(Exception):
    """Root of every error raised by :mod:`safety`."""

    code = "safety_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SafetyPolicyError(SafetyError):
    """A safety policy is malformed (bad action, threshold, field)."""

    code = "safety_policy_invalid"


class UnknownCheckError(SafetyPolicyError):
    """A policy names a check this install does not know."""

    code = "safety_check_unknown"


class CheckUnavailableError(SafetyError):
    """A known check cannot run here (its package or packaged data is missing)."""

    code = "safety_check_unavailable"


class CheckFailedError(SafetyError):
    """A check raised while scanning; the policy's ``on_check_failure`` decides what happens."""

    code = "safety_check_failed"
