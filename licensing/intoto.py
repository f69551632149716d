"""in-toto Statement v1 (https://github.com/in-toto/attestation/tree/main/spec/v1) as frozen values.

Parsing is strict about what we rely on (``_type``, a non-empty ``subject`` list whose entries
carry a ``name`` and a ``digest`` with hex values, ``predicateType``, an object ``predicate``) and,
as the spec asks of consumers, ignores statement members it does not know.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from licensing._fields import as_list, as_object
from licensing.canonical import canonical_json, is_sha256_hex, parse_json
from licensing.errors import CanonicalJSONError, StatementFormatError

__all__ = [
    "PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "Statement",
    "Subject",
    "parse_statement",
    "statement_from_dict",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"

MAX_SUBJECTS = 1024
_MAX_NAME = 1024
_DIGEST_ALGORITHM = re.compile(r"[a-z0-9_-]{1,32}")
_HEX = re.compile(r"[0-9a-f]{1,256}")


@dataclass(frozen=True)
class Subject:
    """A ResourceDescriptor with a name and a digest set (algorithm -> lowercase hex)."""

    name: str
    digest: Mapping[str, str]

    def __post_init__(self) -> None:
        # A read-only copy, so a frozen statement cannot change under a signature.
        object.__setattr__(self, "digest", MappingProxyType(dict(self.digest)))

    @classmethod
    def sha256(cls, name: str, digest_hex: str) -> Subject:
        """A subject named ``name`` with one sha256 digest."""
        if not is_sha256_hex(digest_hex):
            raise StatementFormatError("a sha256 subject digest must be 64 lowercase hex digits")
        return cls(name=name, digest={"sha256": digest_hex})

    @property
    def sha256_hex(self) -> str | None:
        """The sha256 digest, when the subject has one."""
        return self.digest.get("sha256")

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1. ``predicate`` is plain JSON data (no floats)."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [subject.to_dict() for subject in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": dict(self.predicate),
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes: what we sign as the DSSE payload."""
        try:
            return canonical_json(self.to_dict())
        except CanonicalJSONError as exc:
            raise StatementFormatError(f"statement has no canonical form: {exc.message}") from exc


def parse_statement(
    payload: bytes, *, max_bytes: int, predicate_type: str | None = None
) -> Statement:
    """Parse an untrusted statement payload; raises :class:`StatementFormatError` only.

    When ``predicate_type`` is given, any other predicate type is rejected.
    """
    try:
        value = parse_json(payload, max_bytes=max_bytes)
    except CanonicalJSONError as exc:
        raise StatementFormatError(f"statement is not valid JSON: {exc.message}") from exc
    return statement_from_dict(value, predicate_type=predicate_type)


def statement_from_dict(value: object, *, predicate_type: str | None = None) -> Statement:
    """Validate an already parsed JSON value as a Statement v1."""
    err = StatementFormatError
    obj = as_object(value, "statement", err)
    if obj.get("_type") != STATEMENT_TYPE:
        raise err(f"statement _type must be {STATEMENT_TYPE}")
    found_type = obj.get("predicateType")
    if not isinstance(found_type, str) or not found_type or len(found_type) > _MAX_NAME:
        raise err("statement predicateType must be a non-empty string")
    if predicate_type is not None and found_type != predicate_type:
        raise err(f"predicate type is {found_type[:100]!r}, expected {predicate_type!r}")
    predicate = obj.get("predicate", {})
    if predicate is None:
        predicate = {}
    predicate = as_object(predicate, "statement predicate", err)
    raw_subjects = as_list(obj.get("subject"), "statement subject", err, max_items=MAX_SUBJECTS)
    if not raw_subjects:
        raise err("statement subject list is empty")
    subjects = tuple(_parse_subject(raw, index) for index, raw in enumerate(raw_subjects))
    return Statement(subjects=subjects, predicate_type=found_type, predicate=predicate)


def _parse_subject(raw: object, index: int) -> Subject:
    err = StatementFormatError
    what = f"statement subject[{index}]"
    item = as_object(raw, what, err)
    name = item.get("name")
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise err(f"{what}.name must be a non-empty string")
    digest = as_object(item.get("digest"), f"{what}.digest", err)
    if not digest or len(digest) > 16:
        raise err(f"{what}.digest must name between 1 and 16 digests")
    for algorithm, hex_value in digest.items():
        if _DIGEST_ALGORITHM.fullmatch(algorithm) is None:
            raise err(f"{what}.digest has an invalid algorithm name")
        if not isinstance(hex_value, str) or _HEX.fullmatch(hex_value) is None:
            raise err(f"{what}.digest.{algorithm} must be lowercase hex")
    if "sha256" in digest and not is_sha256_hex(digest["sha256"]):
        raise err(f"{what}.digest.sha256 must be 64 lowercase hex digits")
    return Subject(name=name, digest=digest)
