"""Which model a call names, and which models a caller may use: the release rules applied to
model names (``ORG/NAME[@VERSION][:tier]``) for generation, detection and ``/v1/models``.

Loading and caching weights is :mod:`gateway.generation.models`; deciding what a name means and
whether this caller may use it is a use case, so it lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from gateway.auth.principal import Principal
from gateway.db.models import PublicKeyRecord, Release, ReleaseStatus
from gateway.errors import Conflict, GrantRequired, NotFound
from gateway.generation.models import ModelRef, parse_model_name
from gateway.services import releases
from gateway.services.downloads import gated_use
from licensing.layout import TierFile

__all__ = ["UsableModel", "resolve_model", "usable_models"]


def resolve_model(
    session: Session, principal: Principal | None, name: str, now: datetime, *, for_use: bool
) -> tuple[Release, ModelRef]:
    """The published release tier ``name`` points at; a gated one is usable per ``gated_use``."""

    repo_id, version, tier = parse_model_name(name)
    release = releases.find_release(session, repo_id, version, viewer=principal)
    if for_use and release.status != ReleaseStatus.published.value:
        raise Conflict(f"{repo_id}@{release.version} is {release.status}; it cannot be used")
    tiers = {t.tier: t for t in releases.release_tiers(session, release)}
    row = tiers.get(tier)
    if row is None:
        raise NotFound(f"{repo_id}@{release.version} has no tier {tier!r} ({', '.join(tiers)})")
    if for_use and row.gated and not gated_use(session, principal, release, tier, now).allowed:
        raise GrantRequired(
            f"{repo_id}@{release.version}:{tier} is gated: request access first "
            f"(tiergate access request {repo_id})"
        )
    key = session.exec(
        select(PublicKeyRecord).where(PublicKeyRecord.key_id == release.signer_key_id)
    ).first()
    if key is None:
        raise Conflict(f"the key that signed {repo_id}@{release.version} is not registered")
    files = tuple(
        TierFile(f.path, f.sha256, f.size) for f in releases.release_files(session, release, tier)
    )
    assert release.id is not None
    ref = ModelRef(
        release_id=release.id,
        repo_id=repo_id,
        version=release.version,
        tier=tier,
        manifest_digest=row.manifest_digest,
        statement_digest=release.statement_digest,
        bundle=row.bundle,
        files=files,
        public_key_pem=key.pem,
        gated=row.gated,
    )
    return release, ref


@dataclass(frozen=True, slots=True)
class UsableModel:
    id: str
    created: int
    owned_by: str
    gated: bool


def usable_models(session: Session, principal: Principal, now: datetime) -> list[UsableModel]:
    """Published release tiers ``principal`` may generate with (gated: ``gated_use``)."""

    out = []
    for release in releases.list_releases(session, principal):
        if release.status != ReleaseStatus.published.value:
            continue
        created = int((release.published_at or release.created_at).timestamp())
        for tier in releases.release_tiers(session, release):
            if tier.gated and not gated_use(session, principal, release, tier.tier, now).allowed:
                continue
            out.append(
                UsableModel(
                    id=f"{release.repo_id}@{release.version}:{tier.tier}",
                    created=created,
                    owned_by=release.repo_id.split("/", 1)[0],
                    gated=tier.gated,
                )
            )
    return out
