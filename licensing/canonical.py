"""Canonical JSON (RFC 8785 JCS, integer-only profile), strict JSON parsing and sha256 helpers.

Signed payloads and digests must be byte-for-byte reproducible, so the values we sign are limited
to what JCS encodes without ambiguity: ``null``, booleans, integers in the IEEE-754 safe range,
strings, arrays and objects with string keys. Floats are refused outright (``1.0`` vs ``1`` vs
``1e0`` is exactly the kind of drift that breaks a digest); decimals travel as strings.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import json.encoder
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from licensing.errors import CanonicalJSONError

__all__ = [
    "MAX_SAFE_INTEGER",
    "JSONValue",
    "canonical_json",
    "digests_equal",
    "is_sha256_hex",
    "parse_json",
    "sha256_digest",
    "sha256_hex",
]

# JCS serialises numbers as IEEE-754 doubles; beyond 2**53 - 1 two integers share one encoding.
MAX_SAFE_INTEGER = 2**53 - 1

JSONValue = None | bool | int | str | list["JSONValue"] | dict[str, "JSONValue"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``.

    Accepts ``None``, ``bool``, ``int`` (|n| <= 2**53 - 1), ``str``, lists/tuples and mappings with
    ``str`` keys. Raises :class:`CanonicalJSONError` for floats, other types, lone surrogates or
    out-of-range integers.
    """
    parts: list[str] = []
    _encode(value, parts, depth=0)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalJSONError("string contains a lone surrogate; not valid UTF-8") from exc


_MAX_DEPTH = 64


def _encode(value: object, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise CanonicalJSONError(f"nesting deeper than {_MAX_DEPTH}")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJSONError(f"integer {value} is outside the safe range +-(2**53 - 1)")
        out.append(str(int(value)))
    elif isinstance(value, float):
        raise CanonicalJSONError("floats are not allowed in canonical JSON; use a string decimal")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalJSONError(f"object key {key!r} is not a string")
        # JCS orders members by the UTF-16 code units of their names, not by code points.
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for index, key in enumerate(keys):
            if index:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _encode(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalJSONError(f"type {type(value).__name__} has no canonical JSON form")


def _encode_string(text: str) -> str:
    # With ensure_ascii=False the stdlib escapes exactly what ECMAScript JSON.stringify escapes
    # (quote, backslash, \b \f \n \r \t, other C0 controls as lowercase \u00xx), as JCS requires.
    # encode_basestring is that same escaper without json.dumps' per-call set-up (the log's
    # append path spends most of its time here).
    return _ENCODE_STRING(text)


_ENCODE_STRING = json.encoder.encode_basestring


def parse_json(data: bytes, *, max_bytes: int) -> JSONValue:
    """Parse untrusted JSON bytes under our strict profile.

    Strict UTF-8 (no BOM, no UTF-16 sniffing), no floats, no NaN/Infinity, no duplicate object
    keys, integers within the safe range, bounded size and depth. Every failure is a
    :class:`CanonicalJSONError`.
    """
    if len(data) > max_bytes:
        raise CanonicalJSONError(f"JSON is {len(data)} bytes; the limit is {max_bytes}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanonicalJSONError("JSON is not valid UTF-8") from exc
    if text.startswith("\ufeff"):
        raise CanonicalJSONError("JSON starts with a byte order mark")
    try:
        value = json.loads(
            text,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_object,
        )
    except CanonicalJSONError:
        raise
    except (ValueError, RecursionError) as exc:
        # json.JSONDecodeError is a ValueError; so is an integer longer than int_max_str_digits.
        # The C decoder turns runaway nesting into RecursionError rather than a crash.
        raise CanonicalJSONError(f"not valid JSON: {exc}") from exc
    _check_values(value, depth=0)
    return value  # type: ignore[no-any-return]


def _reject_float(text: str) -> NoReturn:
    raise CanonicalJSONError(f"floats are not allowed (got {text[:32]})")


def _reject_constant(text: str) -> NoReturn:
    raise CanonicalJSONError(f"{text} is not allowed")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise CanonicalJSONError(f"duplicate object key {key[:64]!r}")
        result[key] = item
    return result


def _check_values(value: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise CanonicalJSONError(f"JSON nesting deeper than {_MAX_DEPTH}")
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJSONError("integer outside the safe range +-(2**53 - 1)")
    elif isinstance(value, list):
        for item in value:
            _check_values(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_values(item, depth + 1)


def sha256_digest(data: bytes) -> bytes:
    """The raw 32-byte SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_sha256_hex(text: object) -> bool:
    """True when ``text`` is 64 lowercase hex characters."""
    return isinstance(text, str) and _SHA256_HEX.fullmatch(text) is not None


def digests_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality of two digests (hex strings or raw bytes; mixed types never match)."""
    if isinstance(a, str) and isinstance(b, str):
        try:
            return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))
        except UnicodeEncodeError:
            return False
    if isinstance(a, bytes) and isinstance(b, bytes):
        return hmac.compare_digest(a, b)
    return False
