from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from licensing.canonical import parse_json
from licensing.errors import LicensingError, StatementFormatError
from licensing.intoto import (
    STATEMENT_TYPE,
    Statement,
    Subject,
    parse_statement,
    statement_from_dict,
)

DIGEST = "a" * 64


def _statement_dict(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "x", "digest": {"sha256": DIGEST}}],
        "predicateType": "https://example.com/p/v1",
        "predicate": {"k": [1, "v"]},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_round_trip() -> None:
    statement = Statement((Subject.sha256("x", DIGEST),), "https://example.com/p/v1", {"k": 1})
    parsed = parse_statement(statement.to_json(), max_bytes=4096)
    assert parsed == statement
    assert parsed.subjects[0].sha256_hex == DIGEST
    decoded = parse_json(statement.to_json(), max_bytes=4096)
    assert isinstance(decoded, dict)
    assert decoded["_type"] == STATEMENT_TYPE


def test_unknown_statement_members_are_ignored() -> None:
    parsed = statement_from_dict(_statement_dict(extra={"x": 1}))
    assert parsed.predicate_type == "https://example.com/p/v1"


@pytest.mark.parametrize(
    "changes",
    [
        {"_type": "https://in-toto.io/Statement/v0.1"},
        {"_type": None},
        {"subject": []},
        {"subject": None},
        {"subject": {"name": "x"}},
        {"subject": [{"name": "x"}]},
        {"subject": [{"digest": {"sha256": DIGEST}}]},
        {"subject": [{"name": "x", "digest": {"sha256": "A" * 64}}]},
        {"subject": [{"name": "x", "digest": {"sha256": "ab"}}]},
        {"subject": [{"name": "x", "digest": {"sha256": 5}}]},
        {"subject": [{"name": "", "digest": {"sha256": DIGEST}}]},
        {"predicateType": 3},
        {"predicateType": None},
        {"predicate": [1]},
    ],
)
def test_strict_parse(changes: dict[str, object]) -> None:
    with pytest.raises(StatementFormatError):
        statement_from_dict(_statement_dict(**changes))


def test_expected_predicate_type() -> None:
    data = json.dumps(_statement_dict()).encode()
    with pytest.raises(StatementFormatError, match="predicate type"):
        parse_statement(data, max_bytes=4096, predicate_type="https://other/v1")


def test_floats_in_predicate_are_rejected() -> None:
    with pytest.raises(StatementFormatError):
        parse_statement(json.dumps(_statement_dict(predicate={"x": 0.5})).encode(), max_bytes=4096)


def test_subject_digest_is_read_only() -> None:
    subject = Subject.sha256("x", DIGEST)
    with pytest.raises(TypeError):
        subject.digest["sha256"] = "b" * 64  # type: ignore[index]


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    with contextlib.suppress(LicensingError):
        parse_statement(data, max_bytes=4096)
