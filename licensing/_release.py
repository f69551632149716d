"""The tiergate release statement: one signed record naming every tier of a release."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal, get_args

from licensing import _common as c
from licensing._fields import (
    as_list,
    as_object,
    check_keys,
    format_time,
    get_bool,
    get_int,
    get_sha256,
    get_str,
    normalize_time,
    parse_time,
)
from licensing._paths import path_sort_key
from licensing.canonical import MAX_SAFE_INTEGER, canonical_json, is_sha256_hex, sha256_hex
from licensing.errors import CanonicalJSONError, ReleaseStatementError, TierFileInvalidError
from licensing.intoto import Statement, Subject
from licensing.layout import REPO_ID_PATTERN, TierFile
from licensing.sigstore_bundle import compute_manifest_digest

RELEASE_PREDICATE_TYPE = "https://tiergate.dev/release/v1"

ApprovalMode = Literal["auto", "manual"]
FieldType = Literal["text", "country", "checkbox", "select"]
_FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
_MAX_FILES = 100_000
_MAX_FIELDS = 32
_MAX_GRANT_SECONDS = 10 * 366 * 24 * 3600

_E = ReleaseStatementError


@dataclass(frozen=True)
class TierRecord:
    """A tier as the release statement records it: name, files, gated, manifest digest.

    The manifest digest is model_signing's subject digest over the files, so it equals the
    digest inside the tier's ``model.sig`` bundle.
    """

    name: str
    files: tuple[TierFile, ...]
    gated: bool
    manifest_digest: str = ""

    def __post_init__(self) -> None:
        c.check(self.name, c.TIER_NAME, "tier name", _E)
        if not isinstance(self.gated, bool):
            raise _E(f"tier {self.name}: gated must be a boolean")
        files = tuple(sorted(self.files, key=lambda f: path_sort_key(f.path)))
        if not files or len(files) > _MAX_FILES:
            raise _E(f"tier {self.name}: needs between 1 and {_MAX_FILES} files")
        if len({f.path for f in files}) != len(files):
            raise _E(f"tier {self.name}: a file is listed twice")
        digest = compute_manifest_digest((f.path, f.sha256) for f in files)
        if self.manifest_digest and self.manifest_digest != digest:
            raise _E(f"tier {self.name}: manifest digest does not match its files")
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "manifest_digest", digest)

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest_digest": self.manifest_digest,
            "gated": self.gated,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
        }


@dataclass(frozen=True)
class GatedField:
    """A field the publisher asks requesters to fill in (``options`` only for ``select``)."""

    name: str
    label: str
    type: FieldType = "text"
    required: bool = True
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        c.check(self.name, c.FIELD_NAME, "gated field name", _E)
        if not isinstance(self.label, str) or not 0 < len(self.label) <= 200:
            raise _E(f"field {self.name}: label must be 1-200 characters")
        if self.type not in _FIELD_TYPES:
            raise _E(f"field {self.name}: type must be one of {', '.join(_FIELD_TYPES)}")
        if not isinstance(self.required, bool):
            raise _E(f"field {self.name}: required must be a boolean")
        options = tuple(self.options)
        if (self.type == "select") != bool(options):
            raise _E(f"field {self.name}: options are needed for select fields and only there")
        if not all(isinstance(o, str) and 0 < len(o) <= 200 for o in options):
            raise _E(f"field {self.name}: options must be 1-200 character strings")
        if len(options) > 100 or len(set(options)) != len(options):
            raise _E(f"field {self.name}: at most 100 distinct options")
        object.__setattr__(self, "options", options)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "required": self.required,
            "options": list(self.options),
        }


@dataclass(frozen=True)
class ApprovalPolicy:
    """How access to gated tiers is decided, how long a grant lasts, what requesters fill in."""

    mode: ApprovalMode = "manual"
    grant_lifetime_seconds: int = 30 * 24 * 3600
    fields: tuple[GatedField, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "manual"):
            raise _E("approval mode must be 'auto' or 'manual'")
        lifetime = self.grant_lifetime_seconds
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            raise _E("grant lifetime must be an integer number of seconds")
        if not 60 <= lifetime <= _MAX_GRANT_SECONDS:
            raise _E("grant lifetime must be between one minute and ten years")
        fields = tuple(self.fields)
        if len(fields) > _MAX_FIELDS or len({f.name for f in fields}) != len(fields):
            raise _E(f"at most {_MAX_FIELDS} gated fields, with distinct names")
        object.__setattr__(self, "fields", fields)

    @property
    def required_fields(self) -> tuple[str, ...]:
        """Names of the fields a usage attestation must carry (non-empty)."""
        return tuple(f.name for f in self.fields if f.required)

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "grant_lifetime_seconds": self.grant_lifetime_seconds,
            "fields": [f.to_dict() for f in self.fields],
        }


@dataclass(frozen=True)
class ReleaseStatement:
    """The predicate of ``https://tiergate.dev/release/v1`` plus the subjects derived from it.

    ``fidelity`` maps metric names to plain decimal strings (see ``format_decimal``);
    ``optimization`` maps recipe keys to strings or integers. ``created_at`` is kept in UTC
    with second precision, exactly as it is signed.
    """

    repo_id: str
    version: str
    tiers: tuple[TierRecord, ...]
    license: str
    terms_digest: str | None
    approval: ApprovalPolicy
    created_at: datetime
    optimization: Mapping[str, str | int] = field(default_factory=dict)
    fidelity: Mapping[str, str] = field(default_factory=dict)
    # How far the tokenizer round-trips decoded text (release.tokenization_check): short
    # strings by metric name; signed only when present, so older statements stay valid.
    tokenization: Mapping[str, str] = field(default_factory=dict)
    # What each optimized tier measured in an engine at build time (release.engine_records):
    # ``<tier>.<record>.<field>`` -> short string or integer; signed only when present.
    measurements: Mapping[str, str | int] = field(default_factory=dict)
    # The output-safety policy (the ``safety`` library's wire form). Licensing only checks
    # that it is a small canonical-JSON object: what it means is the safety library's, which
    # licensing may not import. Signed only when present, so older statements stay valid.
    safety_policy: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        c.check(self.repo_id, REPO_ID_PATTERN, "repo_id", _E)
        c.check(self.version, c.VERSION, "version", _E)
        c.check(self.license, c.LICENSE, "license", _E)
        if self.terms_digest is not None and not is_sha256_hex(self.terms_digest):
            raise _E("terms digest must be 64 lowercase hex digits or None")
        if not isinstance(self.approval, ApprovalPolicy):
            raise _E("approval must be an ApprovalPolicy")
        tiers = tuple(sorted(self.tiers, key=lambda t: t.name))
        if not 0 < len(tiers) <= 8 or len({t.name for t in tiers}) != len(tiers):
            raise _E("a release has 1-8 tiers with distinct names")
        _check_short_values(self.optimization, "optimization")
        _check_short_values(self.measurements, "measurements")
        for key, value in self.fidelity.items():
            c.check(key, c.METRIC_NAME, "fidelity metric", _E)
            c.check(value, c.DECIMAL, f"fidelity {key} (a decimal string)", _E)
        for key, value in self.tokenization.items():
            c.check(key, c.METRIC_NAME, "tokenization key", _E)
            c.check(value, _SHORT_VALUE, f"tokenization {key}", _E)
        if self.safety_policy is not None:
            _check_safety_policy(self.safety_policy)
            object.__setattr__(self, "safety_policy", MappingProxyType(dict(self.safety_policy)))
        object.__setattr__(self, "tiers", tiers)
        object.__setattr__(self, "tokenization", MappingProxyType(dict(self.tokenization)))
        object.__setattr__(self, "created_at", normalize_time(self.created_at, _E))
        object.__setattr__(self, "optimization", MappingProxyType(dict(self.optimization)))
        object.__setattr__(self, "fidelity", MappingProxyType(dict(self.fidelity)))
        object.__setattr__(self, "measurements", MappingProxyType(dict(self.measurements)))

    @property
    def release_name(self) -> str:
        """``ORG/NAME@VERSION``."""
        return c.release_name(self.repo_id, self.version)

    @property
    def content_digest(self) -> str:
        """sha256 of the canonical ``{tier name: manifest digest}`` map: the main subject."""
        return sha256_hex(canonical_json({t.name: t.manifest_digest for t in self.tiers}))

    def tier(self, name: str) -> TierRecord:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise _E(f"release {self.release_name} has no tier {name!r}")

    def subjects(self) -> tuple[Subject, ...]:
        main = Subject.sha256(self.release_name, self.content_digest)
        per_tier = (
            Subject.sha256(f"{self.release_name}#{t.name}", t.manifest_digest) for t in self.tiers
        )
        return (main, *per_tier)

    def to_statement(self) -> Statement:
        predicate = {
            "repo_id": self.repo_id,
            "version": self.version,
            "tiers": {t.name: t.to_dict() for t in self.tiers},
            "license": self.license,
            "terms_digest": self.terms_digest,
            "approval": self.approval.to_dict(),
            "optimization": dict(self.optimization),
            "fidelity": dict(self.fidelity),
            "created_at": format_time(self.created_at, _E),
        }
        if self.tokenization:
            predicate["tokenization"] = dict(self.tokenization)
        if self.measurements:
            predicate["measurements"] = dict(self.measurements)
        if self.safety_policy is not None:
            predicate["safety_policy"] = dict(self.safety_policy)
        return Statement(self.subjects(), RELEASE_PREDICATE_TYPE, predicate)

    def to_payload(self) -> bytes:
        """The canonical statement bytes that are signed (the DSSE payload)."""
        return self.to_statement().to_json()


_PREDICATE_KEYS = frozenset(
    {"repo_id", "version", "tiers", "license", "terms_digest", "approval"}
    | {"optimization", "fidelity", "created_at"}
)


# Far above what eight tiers' records hold (~40 entries each); bounds what a reader parses.
_MAX_SHORT_ENTRIES = 1024


def _check_short_values(values: Mapping[str, object], what: str) -> None:
    if len(values) > _MAX_SHORT_ENTRIES:
        raise _E(f"{what}: at most {_MAX_SHORT_ENTRIES} entries")
    for key, value in values.items():
        c.check(key, c.METRIC_NAME, f"{what} key", _E)
        ok_int = isinstance(value, int) and not isinstance(value, bool)
        ok_int = ok_int and abs(value) <= MAX_SAFE_INTEGER  # type: ignore[arg-type]
        if not (ok_int or (isinstance(value, str) and len(value) <= 256)):
            raise _E(f"{what} {key}: value must be a short string or an integer")


_OPTIONAL_KEYS = frozenset({"tokenization", "measurements", "safety_policy"})
# A policy is a few checks and a rule per category: a few KiB at most.
MAX_SAFETY_POLICY_BYTES = 16 * 1024


def _check_safety_policy(policy: object) -> None:
    if not isinstance(policy, Mapping):
        raise _E("safety_policy must be an object")
    try:
        size = len(canonical_json(policy))
    except CanonicalJSONError as exc:  # floats, other types, too deep
        raise _E(f"safety_policy is not canonical JSON: {exc}") from None
    if size > MAX_SAFETY_POLICY_BYTES:
        raise _E(f"safety_policy is larger than {MAX_SAFETY_POLICY_BYTES} bytes")


_SHORT_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def release_from_statement(statement: Statement) -> ReleaseStatement:
    """Validate a parsed statement as a release statement; subjects must match the predicate."""
    if statement.predicate_type != RELEASE_PREDICATE_TYPE:
        raise _E(f"predicate type must be {RELEASE_PREDICATE_TYPE}")
    p = as_object(dict(statement.predicate), "predicate", _E)
    check_keys(p, "predicate", _E, required=_PREDICATE_KEYS, optional=_OPTIONAL_KEYS)
    tiers_obj = as_object(p["tiers"], "predicate.tiers", _E)
    tiers = [_parse_tier(name, raw) for name, raw in tiers_obj.items()]
    approval = as_object(p["approval"], "predicate.approval", _E)
    check_keys(
        approval,
        "approval",
        _E,
        required=frozenset({"mode", "grant_lifetime_seconds", "fields"}),
    )
    fields = [_parse_field(raw) for raw in as_list(approval["fields"], "fields", _E, max_items=64)]
    terms = p["terms_digest"]
    release = ReleaseStatement(
        repo_id=get_str(p, "repo_id", "predicate", _E),
        version=get_str(p, "version", "predicate", _E),
        tiers=tuple(tiers),
        license=get_str(p, "license", "predicate", _E),
        terms_digest=None if terms is None else get_sha256(p, "terms_digest", "predicate", _E),
        approval=ApprovalPolicy(
            mode=get_str(approval, "mode", "approval", _E),  # type: ignore[arg-type]
            grant_lifetime_seconds=get_int(approval, "grant_lifetime_seconds", "approval", _E),
            fields=tuple(fields),
        ),
        created_at=parse_time(p["created_at"], "predicate.created_at", _E),
        optimization=as_object(p["optimization"], "predicate.optimization", _E),
        fidelity=as_object(p["fidelity"], "predicate.fidelity", _E),
        tokenization=as_object(p.get("tokenization", {}), "predicate.tokenization", _E),
        measurements=as_object(p.get("measurements", {}), "predicate.measurements", _E),
        safety_policy=(
            None
            if p.get("safety_policy") is None
            else as_object(p["safety_policy"], "predicate.safety_policy", _E)
        ),
    )
    if statement.subjects != release.subjects():
        raise _E("statement subjects do not match the release predicate")
    return release


def _parse_tier(name: str, raw: object) -> TierRecord:
    what = f"tier {name[:40]}"
    tier = as_object(raw, what, _E)
    check_keys(tier, what, _E, required=frozenset({"manifest_digest", "gated", "files"}))
    files = []
    for item in as_list(tier["files"], f"{what} files", _E, max_items=_MAX_FILES):
        entry = as_object(item, f"{what} file", _E)
        check_keys(entry, f"{what} file", _E, required=frozenset({"path", "sha256", "size"}))
        files.append(
            _tier_file(
                get_str(entry, "path", what, _E),
                get_sha256(entry, "sha256", what, _E),
                get_int(entry, "size", what, _E),
            )
        )
    return TierRecord(
        name=name,
        files=tuple(files),
        gated=get_bool(tier, "gated", what, _E),
        manifest_digest=get_sha256(tier, "manifest_digest", what, _E),
    )


def _parse_field(raw: object) -> GatedField:
    item = as_object(raw, "gated field", _E)
    check_keys(
        item,
        "gated field",
        _E,
        required=frozenset({"name", "label", "type", "required", "options"}),
    )
    options = as_list(item["options"], "gated field options", _E, max_items=100)
    return GatedField(
        name=get_str(item, "name", "gated field", _E),
        label=get_str(item, "label", "gated field", _E),
        type=get_str(item, "type", "gated field", _E),  # type: ignore[arg-type]
        required=get_bool(item, "required", "gated field", _E),
        options=tuple(options),
    )


def _tier_file(path: str, sha256: str, size: int) -> TierFile:
    try:
        return TierFile(path, sha256, size)
    except TierFileInvalidError as exc:
        raise _E(exc.message) from exc


def tier_record(
    name: str, files: Iterable[TierFile | tuple[str, str, int]], *, gated: bool
) -> TierRecord:
    """A tier from ``(path, sha256, size)`` entries; the manifest digest is computed."""
    entries = tuple(f if isinstance(f, TierFile) else _tier_file(*f) for f in files)
    return TierRecord(name=name, files=entries, gated=gated)
