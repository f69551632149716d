"""Download use cases: revisions and commits, tier files, who may read a tier, object checks.

A Hub-style revision names a (release version, tier): ``main``/``open`` and ``optimized`` are
the latest published version's tiers, ``<version>`` its open tier, ``<version>-<tier>`` any
tier, and the 40-hex commit (derived from the statement digest and the tier) pins one exactly.
Each tier also serves its ``model.sig`` (the tier's signed bundle) as a file. Once the
publisher signed a card revision, the moving names (``main``, ``open``, a bare tier name)
serve its ``README.md`` and re-signed ``model.sig`` under a commit of their own; the version
tags keep serving the files as first signed (``services.card_revisions``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import (
    CardRevisionRecord,
    Grant,
    Org,
    Release,
    ReleaseStatus,
    ReleaseTier,
    User,
)
from gateway.db.timeutil import as_utc
from gateway.errors import (
    BadRequest,
    GrantRequired,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from gateway.services.access import active_grant
from gateway.services.aibom import release_aibom_files
from gateway.services.card_revisions import (
    latest_revision,
    release_revisions,
    revision_bundles,
    revision_commit,
)
from gateway.services.evaluation_attestations import bom_evaluations, hub_files
from gateway.services.releases import (
    MODEL_CARD_FILE,
    OPEN_TIER,
    holds_blob,
    release_files,
    release_tiers,
    split_repo_id,
)
from licensing.layout import SIGNATURE_FILE, TierFile
from release.errors import ReleaseError

__all__ = [
    "DEFAULT_REVISION",
    "EntryNotFound",
    "GatedUse",
    "GrantRequired",
    "LoginRequired",
    "RepoNotFound",
    "RevisionNotFound",
    "ServedFile",
    "TierRef",
    "check_file_path",
    "commit_of",
    "find_file",
    "gated_use",
    "grant_is_live",
    "org_member_of",
    "read_access",
    "resolve_revision",
    "tier_files",
]

log = logging.getLogger("tiergate.downloads")

DEFAULT_REVISION = "main"
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_GATED_HEADERS = {"X-Error-Code": "GatedRepo"}


class RepoNotFound(NotFound):
    code = "repo_not_found"
    title = "Repository not found"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"X-Error-Code": "RepoNotFound"})


class RevisionNotFound(NotFound):
    code = "revision_not_found"
    title = "Revision not found"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"X-Error-Code": "RevisionNotFound"})


class EntryNotFound(NotFound):
    code = "entry_not_found"
    title = "File not found"

    def __init__(self, message: str, *, commit: str | None = None) -> None:
        headers = {"X-Error-Code": "EntryNotFound"}
        if commit is not None:
            # Lets Hub clients cache the absence per commit instead of asking again.
            headers["X-Repo-Commit"] = commit
        super().__init__(message, headers=headers)


class LoginRequired(Unauthenticated):
    code = "gated_login_required"
    title = "Gated tier: authentication required"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers=dict(_GATED_HEADERS))


class InvalidFilePath(BadRequest):
    code = "invalid_path"
    title = "Invalid file path"


@dataclass(frozen=True, slots=True)
class TierRef:
    """A tier of a release as one revision names it; ``card`` is the card revision a moving
    name (``main``, a bare tier name) serves, None for the signed files as published."""

    release: Release
    tier: ReleaseTier
    card: CardRevisionRecord | None = None

    @property
    def commit(self) -> str:
        if self.card is not None:
            return revision_commit(self.release, self.tier.tier, self.card.revision)
        return commit_of(self.release, self.tier.tier)

    @property
    def revision(self) -> str:
        return f"{self.release.version}-{self.tier.tier}"


@dataclass(frozen=True, slots=True)
class ServedFile(TierFile):
    """A tier file as the gateway serves it."""

    # Set for files held in the database (model.sig), None for blobs.
    content: bytes | None = None


def commit_of(release: Release, tier: str) -> str:
    """A stable 40-hex "commit" for a tier of a release (Hub clients key their cache on it)."""
    return hashlib.sha256(f"{release.statement_digest}:{tier}".encode()).hexdigest()[:40]


def _visible_releases(session: Session, repo_id: str, viewer: Principal | None) -> list[Release]:
    try:
        org_name, name = split_repo_id(repo_id)
    except ValidationFailed as exc:
        raise RepoNotFound(f"no repository {repo_id!r}") from exc
    org = session.exec(select(Org).where(Org.name == org_name)).first()
    if org is None:
        raise RepoNotFound(f"no repository {repo_id!r}")
    query = select(Release).where(Release.org_id == org.id, Release.name == name)
    if viewer is None or viewer.org_id != org.id:
        query = query.where(Release.status != ReleaseStatus.pending.value)
    rows = list(session.exec(query.order_by(col(Release.id))))
    if not rows:
        raise RepoNotFound(f"no repository {repo_id!r}")
    return rows


def _tier_of(session: Session, release: Release, tier: str) -> ReleaseTier | None:
    return next((t for t in release_tiers(session, release) if t.tier == tier), None)


def resolve_revision(
    session: Session, repo_id: str, revision: str | None, *, viewer: Principal | None
) -> TierRef:
    """The release tier a revision names, or ``RepoNotFound``/``RevisionNotFound``."""
    rows = _visible_releases(session, repo_id, viewer)
    rev = revision or DEFAULT_REVISION
    published = [r for r in rows if r.status == ReleaseStatus.published.value]
    latest = (
        max(published, key=lambda r: (as_utc(r.published_at or r.created_at), r.id or 0))
        if published
        else None
    )
    # (release, tier, moving): moving names serve the latest card revision, version tags
    # the signed files as published.
    candidates: list[tuple[Release, str, bool]] = []
    if rev in (DEFAULT_REVISION, OPEN_TIER) and latest is not None:
        candidates.append((latest, OPEN_TIER, True))
    elif _COMMIT_RE.fullmatch(rev):
        for release in rows:
            revisions = release_revisions(session, release)
            for tier in release_tiers(session, release):
                if commit_of(release, tier.tier) == rev:
                    return TierRef(release, tier)
                for card in revisions:
                    if revision_commit(release, tier.tier, card.revision) == rev:
                        return TierRef(release, tier, card)
    else:
        by_version = {r.version: r for r in rows}
        if rev in by_version:
            candidates.append((by_version[rev], OPEN_TIER, False))
        version, sep, tier_name = rev.rpartition("-")
        if sep and version in by_version:
            candidates.append((by_version[version], tier_name, False))
        if latest is not None and rev != OPEN_TIER:
            candidates.append((latest, rev, True))  # a bare tier name: "optimized"
    for release, tier_name, moving in candidates:
        found = _tier_of(session, release, tier_name)
        if found is not None:
            return TierRef(release, found, latest_revision(session, release) if moving else None)
    raise RevisionNotFound(f"{repo_id} has no revision {rev!r}")


def tier_files(session: Session, ref: TierRef) -> list[ServedFile]:
    """Every file of a tier, ``model.sig`` and the release's AI BOMs included, sorted by path.

    The AI BOMs (``aibom.spdx.json``, ``aibom.cdx.json``) describe the whole release and are
    derived from its signed statement and card, not signed themselves (like ``model.sig``);
    ``tiergate pull`` fetches the signed files only. The release's endorsed evaluation
    attestations follow as ``evaluations/<digest>.intoto.json`` (each signed in itself)."""
    files = [
        ServedFile(f.path, f.sha256, f.size)
        for f in release_files(session, ref.release, ref.tier.tier)
    ]
    bundle = ref.tier.bundle.encode("utf-8")
    if ref.card is not None:
        # A card revision: its README.md and the tier's bundle re-signed over it; every
        # other file is the signed one (the service checked the bundle says so).
        card = ref.card.card.encode("utf-8")
        files = [
            ServedFile(f.path, ref.card.card_sha256, len(card), card)
            if f.path == MODEL_CARD_FILE
            else f
            for f in files
        ]
        bundle = revision_bundles(ref.card)[ref.tier.tier].encode("utf-8")
    files.append(
        ServedFile(SIGNATURE_FILE, hashlib.sha256(bundle).hexdigest(), len(bundle), bundle)
    )
    signed = {f.path for f in files}
    try:
        documents = release_aibom_files(ref.release, bom_evaluations(session, ref.release))
    except ReleaseError as exc:
        # A BOM the libraries cannot express must not stop the release's downloads.
        log.warning("AI BOM of %s skipped: %s", ref.release.repo_id, exc.message)
        documents = {}
    # The endorsed evaluation attestations, so snapshot_download brings the evidence along.
    documents = {**documents, **hub_files(session, ref.release)}
    for name, content in documents.items():
        if name not in signed:  # a publisher's own file of that name wins
            files.append(
                ServedFile(name, hashlib.sha256(content).hexdigest(), len(content), content)
            )
    return sorted(files, key=lambda f: f.path)


def check_file_path(path: str) -> str:
    """Refuse path tricks before any lookup: files are found by exact name, never on disk."""
    if (
        not path
        or len(path) > 1024
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise InvalidFilePath(f"not a file path of a release: {path!r:.100}")
    return path


def find_file(session: Session, ref: TierRef, path: str) -> ServedFile:
    check_file_path(path)
    for file in tier_files(session, ref):
        if file.path == path and _uploaded(session, ref.release, file):
            return file
    raise EntryNotFound(
        f"{ref.release.repo_id}@{ref.revision} has no file {path!r}", commit=ref.commit
    )


def _uploaded(session: Session, release: Release, file: ServedFile) -> bool:
    """A pending release (visible to its own org) serves only blobs its org sent.

    Its statement may list any public digest, including another org's gated weights; a
    published release passed the same check when it was published (issue #14.1).
    """
    if file.content is not None or release.status != ReleaseStatus.pending.value:
        return True
    return holds_blob(session, release.org_id, file.sha256)


def grant_is_live(
    session: Session, grant_id: int, *, user_id: int, release: Release, tier: str, now: datetime
) -> Grant | None:
    """Re-check a grant named by a link on every hit: revoked or expired kills the link."""
    grant = session.get(Grant, grant_id)
    if (
        grant is None
        or grant.user_id != user_id
        or grant.release_id != release.id
        or grant.tier != tier
        or grant.revoked_at is not None
        or as_utc(grant.expires_at) <= now
    ):
        return None
    user = session.get(User, user_id)
    return grant if user is not None and not user.disabled else None


def org_member_of(principal: Principal | None, org_id: int) -> bool:
    """Whether ``principal`` belongs to the org with id ``org_id``."""
    return principal is not None and principal.org_id is not None and principal.org_id == org_id


@dataclass(frozen=True, slots=True)
class GatedUse:
    """May a caller use (download or generate with) a gated tier, and under which grant."""

    allowed: bool
    grant: Grant | None  # None when allowed as a member of the publishing org


def gated_use(
    session: Session, principal: Principal | None, release: Release, tier: str, now: datetime
) -> GatedUse:
    """The one rule for gated tiers: downloads (:func:`read_access`) and generation (model
    resolution and admission) alike; documented in docs/downloads.md and docs/generation.md.

    Members of the publishing org use their own gated tiers without a grant: they hold the
    weights already, and the org's reviewers are the ones who would grant it. Everyone else
    needs a live grant (not revoked, not expired) for that release and tier.
    """
    if org_member_of(principal, release.org_id):
        return GatedUse(allowed=True, grant=None)
    if principal is None:
        return GatedUse(allowed=False, grant=None)
    grant = active_grant(session, principal, release, tier, now)
    return GatedUse(allowed=grant is not None, grant=grant)


def read_access(
    session: Session, principal: Principal | None, ref: TierRef, *, now: datetime
) -> Grant | None:
    """May ``principal`` read this tier? Returns the grant it reads under (None when open).

    Open tiers are public; gated ones follow :func:`gated_use`, the
    rule generation follows too (members of the publishing org need no grant, everyone else
    a live one). Raises ``LoginRequired`` (401) or ``GrantRequired`` (403).
    """
    if not ref.tier.gated:
        return None
    if principal is None:
        raise LoginRequired(
            f"{ref.release.repo_id} tier {ref.tier.tier} is gated: send a tiergate token "
            "(token=... / Authorization: Bearer) of an account with a grant"
        )
    use = gated_use(session, principal, ref.release, ref.tier.tier, now)
    if not use.allowed:
        raise GrantRequired(
            f"no active grant for {ref.release.repo_id}@{ref.release.version} tier "
            f"{ref.tier.tier}: run `tiergate access request {ref.release.repo_id}`"
        )
    return use.grant


@dataclass(frozen=True)
class GitRef:
    """One Hub ref: ``refs/heads/<name>`` or ``refs/tags/<name>`` and the tier commit it names."""

    name: str
    ref: str
    target_commit: str


def repo_refs(
    session: Session, repo_id: str, *, viewer: Principal | None
) -> tuple[list[GitRef], list[GitRef]]:
    """(branches, tags) a Hub client lists with ``HfApi.list_repo_refs``.

    Branches are the moving names (``main``/``open`` and every other tier of the newest
    published version, e.g. ``optimized``); tags are the fixed ones (``<version>`` and
    ``<version>-<tier>`` of each published version). Yanked and pending versions serve no
    bytes, so they are not offered. Listing a gated tier's name reveals nothing its release
    statement does not already publish; downloading it still needs a grant.
    """
    rows = [
        r
        for r in _visible_releases(session, repo_id, viewer)
        if r.status == ReleaseStatus.published.value
    ]
    branches: list[GitRef] = []
    tags: list[GitRef] = []
    if not rows:
        return branches, tags
    latest = max(rows, key=lambda r: (as_utc(r.published_at or r.created_at), r.id or 0))
    card = latest_revision(session, latest)
    for tier in release_tiers(session, latest):
        names = [DEFAULT_REVISION, OPEN_TIER] if tier.tier == OPEN_TIER else [tier.tier]
        for name in names:
            commit = TierRef(latest, tier, card).commit
            branches.append(GitRef(name, f"refs/heads/{name}", commit))
    for release in rows:
        for tier in release_tiers(session, release):
            commit = commit_of(release, tier.tier)
            if tier.tier == OPEN_TIER:
                tags.append(GitRef(release.version, f"refs/tags/{release.version}", commit))
            name = f"{release.version}-{tier.tier}"
            tags.append(GitRef(name, f"refs/tags/{name}", commit))
    return branches, tags
