"""Card revisions: a publisher's signed statement that a release's model card was re-rendered.

An in-toto Statement v1, predicate type ``https://tiergate.dev/card-revision/v1``, signed as
DSSE with a key of the publisher. Its subject is the release statement digest; the predicate
names the new ``README.md`` by sha256, the revision number (1, 2, ...), the card it revises,
the manifest digest of each tier's new ``model.sig`` bundle, and the digests of the
evaluation attestations whose results the card shows. The release statement itself is never
re-signed: weights digests stay those it signs, only the card's digest moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from licensing import _common as c
from licensing._fields import (
    as_list,
    as_object,
    check_keys,
    format_time,
    get_int,
    get_sha256,
    get_str,
    normalize_time,
    parse_time,
)
from licensing.canonical import is_sha256_hex, sha256_hex
from licensing.dsse import Envelope, sign_envelope, verify_envelope
from licensing.errors import CardRevisionError, LicensingError
from licensing.intoto import PAYLOAD_TYPE, Statement, Subject, parse_statement
from licensing.keys import PrivateKey, PublicKey
from licensing.layout import REPO_ID_PATTERN

__all__ = [
    "CARD_REVISION_PREDICATE_TYPE",
    "MAX_CARD_REVISION_BYTES",
    "MAX_REVISION",
    "CardRevision",
    "VerifiedCardRevision",
    "parse_card_revision",
    "sign_card_revision",
    "verify_card_revision",
]

CARD_REVISION_PREDICATE_TYPE = "https://tiergate.dev/card-revision/v1"
# A revision names at most a few hundred attestation digests; 256 KiB bounds every parse.
MAX_CARD_REVISION_BYTES = 256 * 1024
MAX_ATTESTATIONS = 1024
MAX_REVISION = 1_000_000
CARD_PATH = "README.md"
_E = CardRevisionError
_REQUIRED = frozenset(
    {"repoId", "version", "revision", "card", "originalCardSha256", "tiers", "attestations"}
    | {"createdAt"}
)


@dataclass(frozen=True)
class CardRevision:
    """What a card revision signs. ``tiers`` maps each tier to its new bundle's manifest
    digest; ``attestations`` are sha256 digests of evaluation attestation payloads (kept
    sorted and unique, so the same set always signs the same bytes)."""

    repo_id: str
    version: str
    release_digest: str
    revision: int
    card_sha256: str
    original_card_sha256: str
    tiers: Mapping[str, str]
    attestations: tuple[str, ...]
    created_at: datetime
    card_path: str = field(default=CARD_PATH)

    def __post_init__(self) -> None:
        c.check(self.repo_id, REPO_ID_PATTERN, "repo_id", _E)
        c.check(self.version, c.VERSION, "version", _E)
        if isinstance(self.revision, bool) or not isinstance(self.revision, int):
            raise _E("revision must be an integer")
        if not 1 <= self.revision <= MAX_REVISION:
            raise _E(f"revision must be between 1 and {MAX_REVISION}")
        for name in ("release_digest", "card_sha256", "original_card_sha256"):
            if not is_sha256_hex(getattr(self, name)):
                raise _E(f"{name} must be 64 lowercase hex digits")
        if self.card_path != CARD_PATH:
            raise _E(f"the card of a revision is {CARD_PATH}")
        if not self.tiers or len(self.tiers) > 8:
            raise _E("a card revision names 1-8 tiers")
        for tier, digest in self.tiers.items():
            if not isinstance(tier, str) or c.TIER_NAME.fullmatch(tier) is None:
                raise _E(f"tier name {str(tier)[:40]!r} is not valid")
            if not is_sha256_hex(digest):
                raise _E(f"tier {tier}: manifest digest must be 64 lowercase hex digits")
        if len(self.attestations) > MAX_ATTESTATIONS:
            raise _E(f"a card revision names at most {MAX_ATTESTATIONS} attestations")
        if any(not is_sha256_hex(d) for d in self.attestations):
            raise _E("attestation digests must be 64 lowercase hex digits")
        object.__setattr__(self, "tiers", MappingProxyType(dict(sorted(self.tiers.items()))))
        object.__setattr__(self, "attestations", tuple(sorted(set(self.attestations))))
        object.__setattr__(self, "created_at", normalize_time(self.created_at, _E))

    @property
    def release_name(self) -> str:
        return c.release_name(self.repo_id, self.version)

    def to_statement(self) -> Statement:
        predicate = {
            "repoId": self.repo_id,
            "version": self.version,
            "revision": self.revision,
            "card": {"path": self.card_path, "sha256": self.card_sha256},
            "originalCardSha256": self.original_card_sha256,
            "tiers": {name: {"manifestDigest": d} for name, d in self.tiers.items()},
            "attestations": list(self.attestations),
            "createdAt": format_time(self.created_at, _E),
        }
        subject = Subject.sha256(self.release_name, self.release_digest)
        return Statement((subject,), CARD_REVISION_PREDICATE_TYPE, predicate)

    def to_payload(self) -> bytes:
        return self.to_statement().to_json()


@dataclass(frozen=True)
class VerifiedCardRevision:
    """A card revision whose signature verified; ``digest`` is sha256 of its payload."""

    revision: CardRevision
    digest: str
    payload: bytes
    key: PublicKey


def sign_card_revision(revision: CardRevision, key: PrivateKey) -> Envelope:
    """DSSE-sign the canonical statement; write it out with ``Envelope.to_json()``."""
    return sign_envelope(PAYLOAD_TYPE, revision.to_payload(), key)


def parse_card_revision(payload: bytes) -> CardRevision:
    """Parse a card revision payload without checking any signature."""
    try:
        statement = parse_statement(
            payload, max_bytes=MAX_CARD_REVISION_BYTES, predicate_type=CARD_REVISION_PREDICATE_TYPE
        )
    except LicensingError as exc:
        raise _E(f"card revision: {exc.message}") from None
    if len(statement.subjects) != 1 or statement.subjects[0].sha256_hex is None:
        raise _E("a card revision names exactly one release statement digest")
    p = as_object(statement.predicate, "predicate", _E)
    check_keys(p, "predicate", _E, required=_REQUIRED)
    card = as_object(p["card"], "predicate.card", _E)
    check_keys(card, "predicate.card", _E, required=frozenset({"path", "sha256"}))
    tiers_raw = as_object(p["tiers"], "predicate.tiers", _E)
    tiers = {}
    for name, value in list(tiers_raw.items())[:9]:
        entry = as_object(value, f"predicate.tiers.{name[:32]}", _E)
        check_keys(entry, "predicate tier", _E, required=frozenset({"manifestDigest"}))
        tiers[name] = get_sha256(entry, "manifestDigest", "predicate tier", _E)
    digests = as_list(p["attestations"], "predicate.attestations", _E, max_items=MAX_ATTESTATIONS)
    subject = statement.subjects[0]
    revision = CardRevision(
        repo_id=get_str(p, "repoId", "predicate", _E, max_len=200),
        version=get_str(p, "version", "predicate", _E, max_len=64),
        release_digest=subject.sha256_hex or "",
        revision=get_int(p, "revision", "predicate", _E, minimum=1, maximum=MAX_REVISION),
        card_sha256=get_sha256(card, "sha256", "predicate.card", _E),
        original_card_sha256=get_sha256(p, "originalCardSha256", "predicate", _E),
        tiers=tiers,
        attestations=tuple(str(d) for d in digests),
        created_at=parse_time(p["createdAt"], "predicate.createdAt", _E),
        card_path=get_str(card, "path", "predicate.card", _E, max_len=64),
    )
    if subject.name != revision.release_name:
        raise _E("the subject name is not the predicate's ORG/NAME@VERSION")
    if len(revision.attestations) != len(digests):
        raise _E("an attestation digest is listed twice or out of order")
    if list(revision.attestations) != digests:
        raise _E("attestation digests must be listed sorted")
    return revision


def verify_card_revision(
    envelope_bytes: bytes, trusted_keys: Iterable[PublicKey]
) -> VerifiedCardRevision:
    """Verify a signed card revision against ``trusted_keys`` and parse it.

    Raises :class:`~licensing.errors.CardRevisionError` only.
    """
    try:
        envelope = Envelope.from_json(envelope_bytes, max_bytes=MAX_CARD_REVISION_BYTES * 2)
        verified = verify_envelope(envelope, trusted_keys)
    except LicensingError as exc:
        raise _E(f"card revision envelope: {exc.message}") from None
    if verified.payload_type != PAYLOAD_TYPE:
        raise _E(f"payload type must be {PAYLOAD_TYPE}")
    revision = parse_card_revision(verified.payload)
    return VerifiedCardRevision(
        revision=revision,
        digest=sha256_hex(verified.payload),
        payload=verified.payload,
        key=verified.key,
    )
