from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from licensing.canonical import (
    MAX_SAFE_INTEGER,
    canonical_json,
    digests_equal,
    is_sha256_hex,
    parse_json,
    sha256_hex,
)
from licensing.errors import CanonicalJSONError
from tests.licensing._strategies import json_values


def test_sorted_keys_no_whitespace_utf8() -> None:
    value = {"b": [1, True, None], "a": {"z": "é", "y": -3}}
    assert canonical_json(value) == '{"a":{"y":-3,"z":"é"},"b":[1,true,null]}'.encode()


def test_string_escapes_follow_ecmascript() -> None:
    assert (
        canonical_json('\u0001\n\t"\\/\u007f\u2028') == b'"\\u0001\\n\\t\\"\\\\/\x7f\xe2\x80\xa8"'
    )


def test_keys_sorted_by_utf16_code_units() -> None:
    # RFC 8785 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FFFF, unlike code point order.
    encoded = canonical_json({"\uffff": 1, "\U0001f600": 2})
    assert encoded.index("\U0001f600".encode()) < encoded.index("\uffff".encode())


def test_rfc8785_example_without_numbers() -> None:
    value = {"literals": [None, True, False], "string": '€$\u000f\nA\'B"\\\\"/'}
    expected = '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert canonical_json(value) == expected.encode()


@pytest.mark.parametrize("bad", [1.0, float("nan"), float("inf"), b"x", {1: 2}, {"a": {1.5}}])
def test_rejects_values_without_canonical_form(bad: object) -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json(bad)


def test_rejects_unsafe_integers_and_lone_surrogates() -> None:
    canonical_json(MAX_SAFE_INTEGER)
    with pytest.raises(CanonicalJSONError):
        canonical_json(MAX_SAFE_INTEGER + 1)
    with pytest.raises(CanonicalJSONError):
        canonical_json("\ud800")


@pytest.mark.parametrize(
    "text",
    [
        b"1.5",
        b"1e3",
        b"NaN",
        b"-Infinity",
        b'{"a":1,"a":2}',
        b"\xef\xbb\xbf{}",
        b"\xff",
        b'"\xed\xa0\x80"',
        b"9007199254740992",
        b"[" * 5000,
        b"[" * 70 + b"]" * 70,
        b"",
        b"{",
    ],
)
def test_parse_rejects(text: bytes) -> None:
    with pytest.raises(CanonicalJSONError):
        parse_json(text, max_bytes=1 << 20)


def test_parse_bounds_size_before_decoding() -> None:
    with pytest.raises(CanonicalJSONError, match="limit"):
        parse_json(b" " * 101, max_bytes=100)


@given(json_values)
def test_round_trip(value: object) -> None:
    encoded = canonical_json(value)
    assert parse_json(encoded, max_bytes=1 << 20) == value
    assert canonical_json(parse_json(encoded, max_bytes=1 << 20)) == encoded


@given(json_values)
def test_matches_stdlib_for_bmp_keys(value: object) -> None:
    # For keys inside the BMP, UTF-16 order is code point order, so the stdlib agrees with JCS.
    stdlib = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if all(ord(ch) < 0x10000 for ch in stdlib):
        assert canonical_json(value) == stdlib.encode()


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_our_error(data: bytes) -> None:
    with contextlib.suppress(CanonicalJSONError):
        parse_json(data, max_bytes=1 << 20)


def test_digest_helpers() -> None:
    digest = sha256_hex(b"abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert is_sha256_hex(digest)
    assert not is_sha256_hex(digest.upper())
    assert not is_sha256_hex(None)
    assert digests_equal(digest, digest)
    assert not digests_equal(digest, "0" * 64)
    assert not digests_equal(digest, digest.encode())
    assert not digests_equal("é", "é" + "")  # non-ASCII hex is never equal, and never raises
