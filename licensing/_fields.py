"""Typed field access for untrusted JSON objects; every mismatch raises the caller's error."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from licensing.canonical import MAX_SAFE_INTEGER, is_sha256_hex
from licensing.errors import LicensingError

ErrorType = type[LicensingError]

_RFC3339_UTC = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")


def as_object(value: object, what: str, error: ErrorType) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object")
    return value


def as_list(value: object, what: str, error: ErrorType, *, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise error(f"{what} must be a JSON array")
    if len(value) > max_items:
        raise error(f"{what} has {len(value)} items; the limit is {max_items}")
    return value


def check_keys(
    obj: Mapping[str, object],
    what: str,
    error: ErrorType,
    *,
    required: frozenset[str],
    optional: frozenset[str] = frozenset(),
) -> None:
    """Reject missing and unknown members: our own predicates are versioned, so extras are bugs."""
    missing = required - obj.keys()
    if missing:
        raise error(f"{what} is missing {', '.join(sorted(missing))}")
    unknown = obj.keys() - required - optional
    if unknown:
        names = ", ".join(sorted(k[:40] for k in unknown)[:5])
        raise error(f"{what} has unknown member(s): {names}")


def get_str(
    obj: Mapping[str, object],
    key: str,
    what: str,
    error: ErrorType,
    *,
    max_len: int = 1024,
    pattern: re.Pattern[str] | None = None,
) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise error(f"{what}.{key} must be a string")
    if len(value) > max_len:
        raise error(f"{what}.{key} is longer than {max_len} characters")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise error(f"{what}.{key} is not in the expected format")
    return value


def get_optional_str(
    obj: Mapping[str, object],
    key: str,
    what: str,
    error: ErrorType,
    *,
    max_len: int = 1024,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    if obj.get(key) is None:
        return None
    return get_str(obj, key, what, error, max_len=max_len, pattern=pattern)


def get_sha256(obj: Mapping[str, object], key: str, what: str, error: ErrorType) -> str:
    value = obj.get(key)
    if not is_sha256_hex(value):
        raise error(f"{what}.{key} must be a lowercase hex sha256 digest")
    assert isinstance(value, str)
    return value


def get_bool(obj: Mapping[str, object], key: str, what: str, error: ErrorType) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise error(f"{what}.{key} must be a boolean")
    return value


def get_int(
    obj: Mapping[str, object],
    key: str,
    what: str,
    error: ErrorType,
    *,
    minimum: int = 0,
    maximum: int = MAX_SAFE_INTEGER,
) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what}.{key} must be an integer")
    if not minimum <= value <= maximum:
        raise error(f"{what}.{key} must be between {minimum} and {maximum}")
    return value


def format_time(moment: datetime, error: ErrorType = LicensingError) -> str:
    """RFC 3339 UTC with second precision, the only timestamp form we sign."""
    return normalize_time(moment, error).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_time(moment: datetime, error: ErrorType = LicensingError) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise error("timestamps must be timezone-aware datetimes")
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_time(text: object, what: str, error: ErrorType) -> datetime:
    if not isinstance(text, str) or _RFC3339_UTC.fullmatch(text) is None:
        raise error(f"{what} must be an RFC 3339 UTC timestamp like 2026-01-31T12:00:00Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise error(f"{what} is not a valid date and time") from exc
