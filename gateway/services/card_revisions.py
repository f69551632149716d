"""Signed card revisions of a release: check one, store it, and say which one a ref serves.

A card revision (``release.card_revision``) re-renders the signed ``README.md`` with the
endorsed evaluation results and re-signs each tier's ``model.sig`` with only the card's
digest changed. The gateway accepts one only when the org's key signed it, every bundle
keeps the release statement's other digests, every attestation it names is endorsed for
this release (or an earlier published version of the repository), and re-rendering the card
from those inputs gives the submitted bytes: a revision cannot carry a score that no
endorsed attestation has. Revisions are numbered 1, 2, ... with no gap; the loser of a race
gets 409 with the number that won.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.engine import begin_write
from gateway.db.models import CardRevisionRecord, EvaluationAttestation, Release, ReleaseStatus
from gateway.db.timeutil import as_utc
from gateway.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from gateway.ledger.events import Actor, record_event
from gateway.services import releases
from gateway.services.keys import org_signing_keys, require_publisher_of
from licensing.card_revision import VerifiedCardRevision, verify_card_revision
from licensing.dsse import Envelope
from licensing.errors import LicensingError
from licensing.statements import ReleaseStatement, parse_release_statement
from release.card_revision import AttestedRelease, check_revised_bundle, render_revised_card
from release.errors import CardRevisionRefusedError

__all__ = [
    "MAX_BUNDLE_BYTES",
    "CardRevisionAttestationNotEndorsed",
    "CardRevisionMismatch",
    "CardRevisionNotFound",
    "CardRevisionSignatureInvalid",
    "CardRevisionStale",
    "CardRevisionView",
    "get_revision",
    "latest_revision",
    "list_revisions",
    "release_revisions",
    "revision_bundles",
    "submit_revision",
]

MAX_BUNDLE_BYTES = 4 * 1024 * 1024
_ENDORSED = ("publisher", "accepted")


class CardRevisionSignatureInvalid(ValidationFailed):
    """No key registered for the release's org verifies the revision (or it is malformed)."""

    code = "card_revision_signature_invalid"
    title = "Card revision not signed by the publisher"


class CardRevisionMismatch(ValidationFailed):
    """The revision's card, bundles or named release disagree with what is signed."""

    code = "card_revision_mismatch"
    title = "Card revision does not match the release"


class CardRevisionAttestationNotEndorsed(ValidationFailed):
    """An attestation the revision names is unknown, pending, rejected or unverified."""

    code = "card_revision_attestation_not_endorsed"
    title = "Card revision names an attestation that is not endorsed"


class CardRevisionStale(Conflict):
    """The revision number is not the next one (another revision won a race)."""

    code = "card_revision_stale"
    title = "Card revision number is not the next one"


class CardRevisionNotFound(NotFound):
    code = "card_revision_not_found"
    title = "No such card revision"


@dataclass(frozen=True, slots=True)
class CardRevisionView:
    revision: int
    digest: str
    card_sha256: str
    attestations: list[str]
    signer_key_id: str
    log_index: int
    created_at: datetime
    envelope: dict[str, Any]
    # tier -> the Hub commit that serves this revision's files.
    commits: dict[str, str]


def revision_commit(release: Release, tier: str, revision: int) -> str:
    """The 40-hex Hub commit of a tier as card revision ``revision`` serves it."""
    seed = f"{release.statement_digest}:{tier}:card-revision:{revision}"
    return hashlib.sha256(seed.encode()).hexdigest()[:40]


def _view(release: Release, row: CardRevisionRecord) -> CardRevisionView:
    envelope = json.loads(row.envelope)
    payload = Envelope.from_dict(envelope).payload
    digests = json.loads(payload)["predicate"]["attestations"]
    tiers = sorted(json.loads(row.bundles))
    return CardRevisionView(
        revision=row.revision,
        digest=row.digest,
        card_sha256=row.card_sha256,
        attestations=[str(d) for d in digests],
        signer_key_id=row.signer_key_id,
        log_index=row.log_index,
        created_at=row.created_at,
        envelope=envelope,
        commits={tier: revision_commit(release, tier, row.revision) for tier in tiers},
    )


def _statement(release: Release) -> ReleaseStatement:
    # Verified against the org's keys when the release was registered; parsed here.
    payload = Envelope.from_json(release.statement_envelope.encode("utf-8")).payload
    return parse_release_statement(payload)


def _verify(session: Session, release: Release, envelope: bytes) -> VerifiedCardRevision:
    keys = org_signing_keys(session, release.org_id)
    try:
        verified = verify_card_revision(envelope, keys)
    except LicensingError as exc:
        raise CardRevisionSignatureInvalid(
            f"the card revision does not verify against the keys of {release.repo_id}'s org: "
            f"{exc.message}"
        ) from None
    revision = verified.revision
    if (revision.repo_id, revision.version) != (release.repo_id, release.version) or (
        revision.release_digest != release.statement_digest
    ):
        raise CardRevisionMismatch(
            f"the card revision names {revision.release_name}, not the signed statement of "
            f"{release.repo_id}@{release.version}"
        )
    return verified


def _earlier_versions(session: Session, release: Release) -> dict[int, Release]:
    """Published versions of the same repository published before ``release``."""
    rows = session.exec(
        select(Release).where(
            Release.org_id == release.org_id,
            Release.name == release.name,
            Release.status == ReleaseStatus.published.value,
            col(Release.id) != release.id,
        )
    )
    mine = as_utc(release.published_at or release.created_at)
    return {
        r.id: r for r in rows if r.id is not None and as_utc(r.published_at or r.created_at) <= mine
    }


def _named_attestations(
    session: Session, release: Release, digests: tuple[str, ...]
) -> tuple[AttestedRelease, list[AttestedRelease]]:
    """The releases and endorsed envelopes a revision names, grouped for re-rendering."""
    earlier = _earlier_versions(session, release)
    rows = (
        list(
            session.exec(
                select(EvaluationAttestation).where(col(EvaluationAttestation.digest).in_(digests))
            )
        )
        if digests
        else []
    )
    found = {row.digest: row for row in rows}
    by_release: dict[int, list[bytes]] = {}
    for digest in digests:
        row = found.get(digest)
        if row is None or (row.release_id != release.id and row.release_id not in earlier):
            raise CardRevisionAttestationNotEndorsed(
                f"attestation {digest[:16]} is not stored beside {release.repo_id}@"
                f"{release.version} or an earlier published version"
            )
        if row.status not in _ENDORSED:
            raise CardRevisionAttestationNotEndorsed(
                f"attestation {digest[:16]} is {row.status}: a card shows only the "
                "publisher's own and accepted community attestations",
                extra={"attestation": digest, "attestation_status": row.status},
            )
        by_release.setdefault(row.release_id, []).append(row.envelope)
    assert release.id is not None
    current = AttestedRelease(
        _statement(release), release.statement_digest, tuple(by_release.pop(release.id, []))
    )
    others = [
        AttestedRelease(_statement(earlier[rid]), earlier[rid].statement_digest, tuple(envs))
        for rid, envs in sorted(by_release.items())
    ]
    return current, others


def submit_revision(
    session: Session,
    principal: Principal,
    repo_id: str,
    version: str,
    *,
    envelope: bytes,
    card: str,
    bundles: dict[str, bytes],
    now: datetime,
) -> CardRevisionView:
    """Check and store a publisher-signed card revision; log ``release.card_revised``."""
    org_name, _ = releases.split_repo_id(repo_id)
    require_publisher_of(principal, org_name)
    release = releases.find_release(session, repo_id, version, viewer=principal)
    # Imported here: hub -> downloads -> this module (downloads asks which revision to serve).
    from gateway.services.hub import check_not_yanked

    check_not_yanked(release)
    if release.status != ReleaseStatus.published.value:
        raise CardRevisionMismatch(f"{repo_id}@{version} is {release.status}: publish it first")
    card_bytes = card.encode("utf-8")
    if len(card_bytes) > releases.MAX_MODEL_CARD_BYTES:
        raise PayloadTooLarge("the model card is larger than 1 MiB")
    if any(len(b) > MAX_BUNDLE_BYTES for b in bundles.values()):
        raise PayloadTooLarge(f"a model.sig bundle is at most {MAX_BUNDLE_BYTES} bytes")
    verified = _verify(session, release, envelope)
    revision = verified.revision
    if hashlib.sha256(card_bytes).hexdigest() != revision.card_sha256:
        raise CardRevisionMismatch("the card's sha256 is not the one the revision signs")
    if hashlib.sha256(release.model_card.encode("utf-8")).hexdigest() != (
        revision.original_card_sha256
    ):
        raise CardRevisionMismatch("the revision names another original card than the signed one")
    statement = _statement(release)
    tiers = {t.name for t in statement.tiers}
    if set(bundles) != tiers or set(revision.tiers) != tiers:
        raise CardRevisionMismatch(
            f"send one model.sig per tier ({', '.join(sorted(tiers))}) and sign each of them"
        )
    for tier in sorted(tiers):
        try:
            digest = check_revised_bundle(
                statement, tier, bundles[tier], verified.key, revision.card_sha256
            )
        except CardRevisionRefusedError as exc:
            raise CardRevisionMismatch(exc.message) from None
        if digest != revision.tiers[tier]:
            raise CardRevisionMismatch(f"tier {tier}: model.sig is not the one the revision signs")
    current, others = _named_attestations(session, release, revision.attestations)
    try:
        rendered = render_revised_card(release.model_card, current, others)
    except CardRevisionRefusedError as exc:
        raise CardRevisionMismatch(exc.message) from None
    if rendered != card:
        raise CardRevisionMismatch(
            "the card is not the one rendered from the signed card and the attestations the "
            "revision names (its model-index or evaluation tables differ)"
        )

    begin_write(session)
    latest = latest_revision(session, release)
    expected = 1 if latest is None else latest.revision + 1
    if revision.revision != expected:
        raise CardRevisionStale(
            f"{repo_id}@{version}: the next card revision is {expected}, not "
            f"{revision.revision}; render again from the latest one",
            extra={"next_revision": expected},
        )
    index = record_event(
        session,
        action="release.card_revised",
        actor=Actor.of(principal),
        resource=f"release:{repo_id}@{version}",
        now=now,
        org_id=release.org_id,
        fields={
            "revision": revision.revision,
            "card_revision_sha256": verified.digest,
            "card_sha256": revision.card_sha256,
            "attestations": list(revision.attestations),
            "signer_key_id": verified.key.key_id,
        },
    )
    assert release.id is not None
    row = CardRevisionRecord(
        release_id=release.id,
        revision=revision.revision,
        digest=verified.digest,
        envelope=envelope.decode("utf-8"),
        card=card,
        card_sha256=revision.card_sha256,
        bundles=json.dumps({t: bundles[t].decode("utf-8") for t in sorted(tiers)}),
        signer_key_id=verified.key.key_id,
        created_by=principal.user_id,
        log_index=index,
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # PostgreSQL: a concurrent revision took the number first
        raise CardRevisionStale(
            f"{repo_id}@{version}: card revision {revision.revision} was stored meanwhile",
            extra={"next_revision": revision.revision + 1},
        ) from None
    return _view(release, row)


def latest_revision(session: Session, release: Release) -> CardRevisionRecord | None:
    return session.exec(
        select(CardRevisionRecord)
        .where(CardRevisionRecord.release_id == release.id)
        .order_by(col(CardRevisionRecord.revision).desc())
        .limit(1)
    ).first()


def release_revisions(session: Session, release: Release) -> list[CardRevisionRecord]:
    return list(
        session.exec(
            select(CardRevisionRecord)
            .where(CardRevisionRecord.release_id == release.id)
            .order_by(col(CardRevisionRecord.revision))
        )
    )


def revision_bundles(row: CardRevisionRecord) -> dict[str, str]:
    """tier -> the revised ``model.sig`` text."""
    loaded = json.loads(row.bundles)
    return {str(k): str(v) for k, v in loaded.items()}


def list_revisions(
    session: Session, viewer: Principal | None, repo_id: str, version: str
) -> list[CardRevisionView]:
    release = releases.find_release(session, repo_id, version, viewer=viewer)
    return [_view(release, row) for row in release_revisions(session, release)]


def get_revision(
    session: Session, viewer: Principal | None, repo_id: str, version: str, revision: int
) -> tuple[CardRevisionView, str]:
    """One revision and its card text."""
    release = releases.find_release(session, repo_id, version, viewer=viewer)
    for row in release_revisions(session, release):
        if row.revision == revision:
            return _view(release, row), row.card
    raise CardRevisionNotFound(f"{repo_id}@{version} has no card revision {revision}")
