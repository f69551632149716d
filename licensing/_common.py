"""Formats shared by tiergate's own predicates: names, versions, field names, decimals."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from licensing._fields import ErrorType
from licensing.layout import REPO_ID_PATTERN

VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
TIER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
METRIC_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
# SPDX license expressions: ids, '+', parentheses and AND/OR/WITH, kept to their character set.
LICENSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+:() -]{0,199}")
# Plain decimal notation only: no exponent, no leading '+', no leading zeros.
DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?")


def check(value: object, pattern: re.Pattern[str], what: str, error: ErrorType) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise error(f"{what} is not in the expected format")
    return value


def release_name(repo_id: str, version: str) -> str:
    """``ORG/NAME@VERSION``, the subject name of a release."""
    return f"{repo_id}@{version}"


def split_release_name(name: str, what: str, error: ErrorType) -> tuple[str, str]:
    repo_id, sep, version = name.rpartition("@")
    if not sep:
        raise error(f"{what} must look like ORG/NAME@VERSION")
    return check(repo_id, REPO_ID_PATTERN, what, error), check(version, VERSION, what, error)


def format_decimal(value: object, *, places: int = 6) -> str:
    """A fidelity value as a plain decimal string, rounded half-even to ``places`` decimals.

    Floats are banned from canonical JSON, so measured metrics travel as strings like
    ``"0.993100"``. NaN and infinities are rejected with ``ValueError`` (caller bug).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"cannot format {type(value).__name__} as a decimal")
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{value!r} is not finite")
    quantum = Decimal(1).scaleb(-places) if places > 0 else Decimal(1)
    text = format(number.quantize(quantum), "f")
    if text.startswith("-") and Decimal(text) == 0:
        text = text[1:]
    if DECIMAL.fullmatch(text) is None:
        raise ValueError(f"{value!r} is out of range for a fidelity value")
    return text
