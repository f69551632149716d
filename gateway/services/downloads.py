"""Download use cases: revisions and commits, tier files, who may read a tier, object checks.

A Hub-style revision names a (release version, tier): ``main``/``open`` and ``optimized`` are
the latest published version's tiers, ``<version>`` its open tier, ``<version>-<tier>`` any
tier, and the 40-hex commit (derived from the statement digest and the tier) pins one exactly.
Each tier also serves its ``model.sig`` (the tier's signed bundle) as a file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import Grant, Org, Release, ReleaseStatus, ReleaseTier, User
from gateway.db.timeutil import as_utc
from gateway.errors import (
    BadRequest,
    GrantRequired,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from gateway.services.access import active_grant
from gateway.services.releases import (
    OPEN_TIER,
    holds_blob,
    release_files,
    release_tiers,
    split_repo_id,
)
from licensing.layout import SIGNATURE_FILE, TierFile

__all__ = [
    "DEFAULT_REVISION",
    "EntryNotFound",
    "GrantRequired",
    "LoginRequired",
    "RepoNotFound",
    "RevisionNotFound",
    "ServedFile",
    "TierRef",
    "check_file_path",
    "commit_of",
    "find_file",
    "grant_is_live",
    "read_access",
    "resolve_revision",
    "tier_files",
]

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
    release: Release
    tier: ReleaseTier

    @property
    def commit(self) -> str:
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
    candidates: list[tuple[Release, str]] = []
    if rev in (DEFAULT_REVISION, OPEN_TIER) and latest is not None:
        candidates.append((latest, OPEN_TIER))
    elif _COMMIT_RE.fullmatch(rev):
        for release in rows:
            for tier in release_tiers(session, release):
                if commit_of(release, tier.tier) == rev:
                    return TierRef(release, tier)
    else:
        by_version = {r.version: r for r in rows}
        if rev in by_version:
            candidates.append((by_version[rev], OPEN_TIER))
        version, sep, tier_name = rev.rpartition("-")
        if sep and version in by_version:
            candidates.append((by_version[version], tier_name))
        if latest is not None and rev != OPEN_TIER:
            candidates.append((latest, rev))  # a bare tier name: "optimized"
    for release, tier_name in candidates:
        found = _tier_of(session, release, tier_name)
        if found is not None:
            return TierRef(release, found)
    raise RevisionNotFound(f"{repo_id} has no revision {rev!r}")


def tier_files(session: Session, ref: TierRef) -> list[ServedFile]:
    """Every file of a tier, ``model.sig`` included, sorted by path."""
    files = [
        ServedFile(f.path, f.sha256, f.size)
        for f in release_files(session, ref.release, ref.tier.tier)
    ]
    bundle = ref.tier.bundle.encode("utf-8")
    files.append(
        ServedFile(SIGNATURE_FILE, hashlib.sha256(bundle).hexdigest(), len(bundle), bundle)
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


def read_access(
    session: Session, principal: Principal | None, ref: TierRef, *, now: datetime
) -> Grant | None:
    """May ``principal`` read this tier? Returns the grant it reads under (None when open).

    Open tiers are public; the publisher's own org reads its gated tiers; everyone else
    needs a live grant. Raises ``LoginRequired`` (401) or ``GrantRequired`` (403).
    """
    if not ref.tier.gated:
        return None
    if principal is None:
        raise LoginRequired(
            f"{ref.release.repo_id} tier {ref.tier.tier} is gated: send a tiergate token "
            "(token=... / Authorization: Bearer) of an account with a grant"
        )
    if principal.org_id is not None and principal.org_id == ref.release.org_id:
        return None
    grant = active_grant(session, principal, ref.release, ref.tier.tier, now)
    if grant is None:
        raise GrantRequired(
            f"no active grant for {ref.release.repo_id}@{ref.release.version} tier "
            f"{ref.tier.tier}: run `tiergate access request {ref.release.repo_id}`"
        )
    return grant
