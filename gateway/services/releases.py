"""Release use cases: register a signed release, receive its blobs, publish, yank, read.

A release is created `pending` from its signed statement; it becomes `published` only when
every file of every tier is stored and verified, in one transaction. Until then nobody but
its org sees it. Versions are immutable: the same version with other content is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import (
    Blob,
    BlobHolder,
    Org,
    Release,
    ReleaseFile,
    ReleaseStatus,
    ReleaseTier,
    Role,
)
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.ledger.events import Actor, record_event
from gateway.services.keys import org_signing_keys, require_publisher_of
from licensing import layout
from licensing.canonical import digests_equal
from licensing.errors import LicensingError
from licensing.sigstore_bundle import verify_model_bundle_manifest
from licensing.statements import ReleaseStatement, VerifiedRelease, verify_release_statement

MODEL_CARD_FILE = "README.md"
OPEN_TIER = "open"
MAX_MODEL_CARD_BYTES = 1 << 20
MAX_TERMS_BYTES = 256 << 10


@dataclass(frozen=True, slots=True)
class MissingBlob:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class CreatedRelease:
    release: Release
    missing: list[MissingBlob]
    created: bool


class ReleaseRejected(ValidationFailed):
    code = "release_rejected"
    title = "Release rejected"


class VersionExists(Conflict):
    code = "version_exists"
    title = "Version already exists"


class ReleaseNotReady(Conflict):
    code = "release_incomplete"
    title = "Release incomplete"


def split_repo_id(repo_id: str) -> tuple[str, str]:
    parts = layout.split_repo_id(repo_id)
    if parts is None:
        raise ValidationFailed(f"repo id must be {layout.REPO_ID_RULE}; got {repo_id!r:.200}")
    return parts


def _verify_statement(session: Session, org_id: int, envelope: bytes) -> VerifiedRelease:
    keys = org_signing_keys(session, org_id)
    if not keys:
        raise ReleaseRejected(
            "your org has no registered signing key: run `tiergate keys register KEY.pub.pem`"
        )
    try:
        verified = verify_release_statement(envelope, keys)
    except LicensingError as exc:
        raise ReleaseRejected(
            f"the release statement does not verify against your org's keys: {exc.message}"
        ) from exc
    _check_safety_policy(verified.release)
    return verified


def _check_safety_policy(release: ReleaseStatement) -> None:
    """A signed safety policy this gateway could not enforce (an unknown check) is refused
    at publish, not discovered at the first call."""
    if release.safety_policy is None:
        return
    from safety.errors import SafetyError
    from safety.policy import parse_policy

    try:
        parse_policy(release.safety_policy)
    except SafetyError as exc:
        raise ReleaseRejected(f"the signed safety policy is unusable here: {exc.message}") from exc


def _check_bundles(verified: VerifiedRelease, bundles: dict[str, bytes]) -> dict[str, str]:
    """Each tier's model.sig must be signed by the same key and cover exactly its files."""
    release = verified.release
    names = {tier.name for tier in release.tiers}
    if set(bundles) != names:
        raise ReleaseRejected(
            f"send one model.sig bundle per tier ({', '.join(sorted(names))}), "
            f"got {', '.join(sorted(bundles)) or 'none'}"
        )
    out: dict[str, str] = {}
    for tier in release.tiers:
        try:
            manifest = verify_model_bundle_manifest(bundles[tier.name], verified.key)
        except LicensingError as exc:
            raise ReleaseRejected(f"tier {tier.name}: model.sig: {exc.message}") from exc
        signed = {(r.name, r.sha256) for r in manifest.resources}
        listed = {(f.path, f.sha256) for f in tier.files}
        if signed != listed:
            raise ReleaseRejected(
                f"tier {tier.name}: model.sig covers other files than the release statement"
            )
        out[tier.name] = bundles[tier.name].decode("utf-8")
    return out


def _check_text_against(release: ReleaseStatement, model_card: str, terms: str | None) -> None:
    if len(model_card.encode("utf-8")) > MAX_MODEL_CARD_BYTES:
        raise ReleaseRejected("the model card is larger than 1 MiB")
    card_digest = hashlib.sha256(model_card.encode("utf-8")).hexdigest()
    for tier in release.tiers:
        for file in tier.files:
            if file.path == MODEL_CARD_FILE and not digests_equal(file.sha256, card_digest):
                raise ReleaseRejected(
                    f"the model card differs from the signed {MODEL_CARD_FILE} of tier {tier.name}"
                )
    if release.terms_digest is None:
        if terms:
            raise ReleaseRejected("terms were sent but the signed statement names none")
        return
    if terms is None:
        raise ReleaseRejected("the statement names terms: send their text")
    if len(terms.encode("utf-8")) > MAX_TERMS_BYTES:
        raise ReleaseRejected("the terms are larger than 256 KiB")
    if not digests_equal(hashlib.sha256(terms.encode("utf-8")).hexdigest(), release.terms_digest):
        raise ReleaseRejected("the terms text does not match the signed terms digest")


def create_release(
    session: Session,
    principal: Principal,
    *,
    statement_envelope: bytes,
    bundles: dict[str, bytes],
    model_card: str,
    terms: str | None,
    now: datetime,
    stored: Callable[[str], bool] | None = None,
) -> CreatedRelease:
    """Verify and register a release as pending; say which blobs the gateway still needs."""
    # Parse enough to know the org before trusting anything: keys are looked up per org.
    org_name = _claimed_org(statement_envelope)
    org_id = require_publisher_of(principal, org_name)
    verified = _verify_statement(session, org_id, statement_envelope)
    release = verified.release
    org, name = split_repo_id(release.repo_id)
    if org != org_name:
        raise ReleaseRejected("the signed repo id names another org")
    bundle_texts = _check_bundles(verified, bundles)
    _check_text_against(release, model_card, terms)

    existing = session.exec(
        select(Release).where(
            Release.org_id == org_id, Release.name == name, Release.version == release.version
        )
    ).first()
    if existing is not None:
        if existing.statement_digest != verified.release_digest:
            raise VersionExists(
                f"{release.release_name} already exists with other content; versions are "
                "immutable: publish a new version"
            )
        missing = missing_blobs(session, existing, stored=stored)
        return CreatedRelease(existing, missing, created=False)

    row = Release(
        org_id=org_id,
        name=name,
        version=release.version,
        repo_id=release.repo_id,
        status=ReleaseStatus.pending.value,
        statement_envelope=statement_envelope.decode("utf-8"),
        statement_digest=verified.release_digest,
        signer_key_id=verified.key.key_id,
        license=release.license,
        terms_text=terms,
        terms_digest=release.terms_digest,
        model_card=model_card,
        policy_json=json.dumps(release.approval.to_dict(), sort_keys=True),
        created_by=principal.user_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    for tier in release.tiers:
        session.add(
            ReleaseTier(
                release_id=row.id,
                tier=tier.name,
                gated=tier.gated,
                bundle=bundle_texts[tier.name],
                manifest_digest=tier.manifest_digest,
            )
        )
        for file in tier.files:
            session.add(
                ReleaseFile(
                    release_id=row.id,
                    tier=tier.name,
                    path=file.path,
                    sha256=file.sha256,
                    size=file.size,
                )
            )
    session.flush()
    record_event(
        session,
        action="release.created",
        actor=Actor.of(principal),
        resource=f"release:{release.release_name}",
        now=now,
        org_id=org_id,
        fields={"statement_digest": verified.release_digest, "signer": verified.key.key_id},
    )
    return CreatedRelease(row, missing_blobs(session, row, stored=stored), created=True)


def _claimed_org(envelope: bytes) -> str:
    from licensing.dsse import Envelope
    from licensing.statements import parse_release_statement

    try:
        payload = Envelope.from_json(envelope).payload
        return split_repo_id(parse_release_statement(payload).repo_id)[0]
    except LicensingError as exc:
        raise ReleaseRejected(f"the release statement is malformed: {exc.message}") from exc


def missing_blobs(
    session: Session, release: Release, *, stored: Callable[[str], bool] | None = None
) -> list[MissingBlob]:
    """The release's blobs its org has not uploaded yet.

    A blob counts only if the release's own org holds it (sent its bytes, verified): digests
    are public, so a blob stored for another org is still missing here (issue #14.1); the
    upload then dedups against the stored copy, but the bytes must be sent.

    ``stored`` (the blob store's ``has``) also counts a held blob whose bytes are gone
    (removed by ``admin gc`` in the instant between its row check and its delete, or out of
    band) as missing, so a publish asks for it again instead of going live without it.
    """
    files = session.exec(select(ReleaseFile).where(ReleaseFile.release_id == release.id)).all()
    wanted = {f.sha256: f.size for f in files}
    held = (
        select(Blob.sha256, Blob.size)
        .join(BlobHolder, col(BlobHolder.sha256) == col(Blob.sha256))
        .where(BlobHolder.org_id == release.org_id, col(Blob.sha256).in_(list(wanted)))
    )
    # A statement may sign a wrong size for a real digest: that file was never sent as listed.
    present = {sha for sha, size in session.exec(held).all() if size == wanted[sha]}
    if stored is not None:
        present = {sha for sha in present if stored(sha)}
    return [MissingBlob(sha, size) for sha, size in sorted(wanted.items()) if sha not in present]


def holds_blob(session: Session, org_id: int, sha256: str) -> bool:
    """True once ``org_id`` has uploaded ``sha256`` (knowing the digest is not enough)."""
    query = select(BlobHolder.sha256).where(
        BlobHolder.org_id == org_id, BlobHolder.sha256 == sha256
    )
    return session.exec(query).first() is not None


def expected_blob_size(session: Session, principal: Principal, sha256: str) -> int:
    """The size of a blob the caller's org may upload: one its pending releases list."""
    if principal.role is not Role.publisher or principal.org_id is None:
        raise NotFound("no pending release of yours lists this blob")
    row = session.exec(
        select(ReleaseFile.size)
        .join(Release, col(Release.id) == col(ReleaseFile.release_id))
        .where(
            ReleaseFile.sha256 == sha256,
            Release.org_id == principal.org_id,
            Release.status == ReleaseStatus.pending.value,
        )
    ).first()
    if row is None:
        raise NotFound("no pending release of yours lists this blob")
    return int(row)


def record_blob(session: Session, sha256: str, size: int, now: datetime, *, org_id: int) -> None:
    """Record that ``org_id`` sent the bytes of a stored, verified blob.

    Call only after the bytes this org sent were verified against ``sha256``: the holder row
    is what lets its releases use the blob. Idempotent, also when two replicas finish the
    same upload.
    """
    _insert_ignoring_duplicates(
        session, Blob, {"sha256": sha256, "size": size, "created_at": now}, ["sha256"]
    )
    _insert_ignoring_duplicates(
        session,
        BlobHolder,
        {"org_id": org_id, "sha256": sha256, "created_at": now},
        ["org_id", "sha256"],
    )


def _insert_ignoring_duplicates(
    session: Session, model: Any, values: dict[str, Any], key: list[str]
) -> None:
    dialect = session.get_bind().dialect.name
    insert_: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as insert_
    else:
        from sqlalchemy.dialects.sqlite import insert as insert_
    session.execute(
        insert_(model.__table__).values(**values).on_conflict_do_nothing(index_elements=key)
    )


def find_release(
    session: Session, repo_id: str, version: str | None, *, viewer: Principal | None
) -> Release:
    """A release the viewer may see: published/yanked for all, pending for its own org."""
    org_name, name = split_repo_id(repo_id)
    org = session.exec(select(Org).where(Org.name == org_name)).first()
    if org is None:
        raise NotFound(f"no repository {repo_id!r}")
    query = select(Release).where(Release.org_id == org.id, Release.name == name)
    own_org = viewer is not None and viewer.org_id == org.id
    if not own_org:
        query = query.where(Release.status != ReleaseStatus.pending.value)
    if version is not None:
        row = session.exec(query.where(Release.version == version)).first()
        if row is None:
            raise NotFound(f"no version {version!r} of {repo_id!r}")
        return row
    rows = [r for r in session.exec(query) if r.status == ReleaseStatus.published.value]
    if not rows:
        raise NotFound(f"no published version of {repo_id!r}")
    return max(rows, key=lambda r: (r.published_at or r.created_at, r.id or 0))


def publish_release(
    session: Session,
    principal: Principal,
    repo_id: str,
    version: str,
    *,
    now: datetime,
    stored: Callable[[str], bool] | None = None,
) -> Release:
    org_name, _ = split_repo_id(repo_id)
    require_publisher_of(principal, org_name)
    release = find_release(session, repo_id, version, viewer=principal)
    if release.status == ReleaseStatus.published.value:
        return release
    if release.status != ReleaseStatus.pending.value:
        raise Conflict(f"{repo_id}@{version} is {release.status}")
    missing = missing_blobs(session, release, stored=stored)
    if missing:
        raise ReleaseNotReady(
            f"{len(missing)} file(s) not uploaded yet",
            extra={"missing": [{"sha256": m.sha256, "size": m.size} for m in missing]},
        )
    release.status = ReleaseStatus.published.value
    release.published_at = now
    session.add(release)
    record_event(
        session,
        action="release.published",
        actor=Actor.of(principal),
        resource=f"release:{repo_id}@{version}",
        now=now,
        org_id=release.org_id,
        fields={"statement_digest": release.statement_digest},
    )
    return release


class AlreadyYanked(Conflict):
    code = "already_yanked"
    title = "Release already yanked"


def yank_release(
    session: Session,
    principal: Principal,
    repo_id: str,
    version: str,
    *,
    reason: str,
    now: datetime,
) -> Release:
    """Yank a release, once: a second yank answers 409 with the reason that stands.

    The first reason is what every client has shown since (pages, Hub errors, `release
    show`, the log entry), so it is not silently replaced; the transition is one conditional
    UPDATE, so of two concurrent yanks exactly one is recorded and logged.
    """
    from sqlalchemy import update

    org_name, _ = split_repo_id(repo_id)
    require_publisher_of(principal, org_name)
    if not reason.strip():
        raise ValidationFailed("say why the release is yanked: --reason")
    release = find_release(session, repo_id, version, viewer=principal)
    changed = session.execute(
        update(Release)
        .where(col(Release.id) == release.id, col(Release.status) != ReleaseStatus.yanked.value)
        .values(status=ReleaseStatus.yanked.value, yank_reason=reason.strip(), yanked_at=now)
    )
    session.refresh(release)
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        when = release.yanked_at.isoformat() if release.yanked_at else None
        raise AlreadyYanked(
            f"{repo_id}@{version} was already yanked: {release.yank_reason or 'no reason given'}",
            extra={"yank_reason": release.yank_reason, "yanked_at": when},
        )
    record_event(
        session,
        action="release.yanked",
        actor=Actor.of(principal),
        resource=f"release:{repo_id}@{version}",
        now=now,
        org_id=release.org_id,
        fields={"reason": release.yank_reason},
    )
    return release


def list_releases(session: Session, viewer: Principal | None) -> list[Release]:
    query = select(Release).order_by(col(Release.repo_id), col(Release.id))
    rows = list(session.exec(query))
    return [
        r
        for r in rows
        if r.status != ReleaseStatus.pending.value or (viewer and viewer.org_id == r.org_id)
    ]


def release_tiers(session: Session, release: Release) -> list[ReleaseTier]:
    query = select(ReleaseTier).where(ReleaseTier.release_id == release.id)
    return list(session.exec(query.order_by(col(ReleaseTier.tier))))


def release_files(session: Session, release: Release, tier: str | None = None) -> list[ReleaseFile]:
    query = select(ReleaseFile).where(ReleaseFile.release_id == release.id)
    if tier is not None:
        query = query.where(ReleaseFile.tier == tier)
    return list(session.exec(query.order_by(col(ReleaseFile.tier), col(ReleaseFile.path))))
