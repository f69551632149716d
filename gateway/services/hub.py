"""What Hugging Face clients read about a repository: model info, listings, yanked revisions.

The Hub's ``gated`` is a repository property ("auto"/"manual"/False); tiergate gates tiers.
So repository-level answers (listing, model info without a revision) say how the repository's
gated tier is approved, and a revision's model info says whether *that* tier is gated. The
card metadata (``cardData``, ``pipeline_tag``, ``library_name``, tags) comes from the YAML
front matter of the signed model card. A yanked revision answers 410 with the headers
``huggingface_hub`` re-raises as ``RevisionNotFoundError`` carrying the yank reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import PolicyVersion, Release, ReleaseStatus, ReleaseTier
from gateway.db.timeutil import as_utc
from gateway.errors import NotFound
from gateway.links import ReleaseYanked
from gateway.schemas.downloads import HubModelInfo, HubSibling
from gateway.services import catalog, downloads
from gateway.services.downloads import DEFAULT_REVISION, RevisionNotFound, TierRef
from gateway.services.releases import OPEN_TIER, release_tiers

__all__ = [
    "MAX_FRONT_MATTER_CHARS",
    "approval_mode",
    "card_metadata",
    "check_not_yanked",
    "list_models",
    "model_info",
    "yanked_error",
]

# Far above any real card's metadata; bounds the YAML parse of publisher-written text.
MAX_FRONT_MATTER_CHARS = 64 * 1024


def yanked_error(release: Release) -> ReleaseYanked:
    reason = release.yank_reason or "no reason given"
    return ReleaseYanked(
        f"{release.repo_id}@{release.version} was yanked: {reason}",
        extra={"version": release.version, "yank_reason": release.yank_reason},
    )


def check_not_yanked(release: Release) -> None:
    """Refuse a yanked release with its reason, in the shape Hub clients surface."""
    if release.status == ReleaseStatus.yanked.value:
        raise yanked_error(release)


def _front_matter_text(card: str) -> str | None:
    if not card.startswith("---"):
        return None
    lines = card[: MAX_FRONT_MATTER_CHARS + 8].split("\n")
    if lines[0].strip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i])
    return None  # unterminated, or longer than the bound


def card_metadata(card: str) -> dict[str, Any]:
    """The card's YAML front matter as a dict; {} when absent, malformed or unsafe to expand.

    YAML aliases are refused: a few bytes of ``&a [*a, *a, ...]`` nest into an exponentially
    large structure once serialized to JSON, and no card needs them.
    """
    import yaml  # type: ignore[import-untyped]

    text = _front_matter_text(card)
    if not text:
        return {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=loader)):
            return {}
        data = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
        # Dates and other YAML-only scalars become strings: the answer is JSON.
        data = json.loads(json.dumps(data, default=str))
    except (yaml.YAMLError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _hub_time(value: datetime) -> str:
    moment = as_utc(value)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def approval_mode(session: Session, release: Release, tier: str) -> str:
    """The tier's current approval mode: its newest policy version, else the signed one."""
    row = session.exec(
        select(PolicyVersion.policy_json)
        .where(PolicyVersion.release_id == release.id, PolicyVersion.tier == tier)
        .order_by(col(PolicyVersion.version).desc())
        .limit(1)
    ).first()
    try:
        mode = json.loads(row if row is not None else release.policy_json).get("mode")
    except (ValueError, AttributeError):
        mode = None
    return "auto" if mode == "auto" else "manual"


def _gated(session: Session, release: Release, tiers: list[ReleaseTier]) -> str | bool:
    gated = [t for t in tiers if t.gated]
    if not gated:
        return False
    modes = {approval_mode(session, release, t.tier) for t in gated}
    # One manual tier means someone waits for a person: say so rather than "auto".
    return "manual" if "manual" in modes else "auto"


def _info(session: Session, ref: TierRef, *, repo_level: bool, with_files: bool) -> HubModelInfo:
    release = ref.release
    files = downloads.tier_files(session, ref) if with_files else []
    meta = card_metadata(ref.card.card if ref.card is not None else release.model_card)
    every_tier = release_tiers(session, release)
    tiers = every_tier if repo_level else [ref.tier]
    card_tags = meta.get("tags")
    tags = [str(t) for t in card_tags] if isinstance(card_tags, list) else []
    tags += ["tiergate", f"tier:{ref.tier.tier}", f"version:{release.version}"]
    if release.license:
        tags.append(f"license:{release.license}")
    pipeline_tag = meta.get("pipeline_tag")
    library_name = meta.get("library_name")
    return HubModelInfo(
        id=release.repo_id,
        modelId=release.repo_id,
        author=release.repo_id.split("/")[0],
        sha=ref.commit,
        lastModified=_hub_time(release.published_at or release.created_at),
        createdAt=_hub_time(release.created_at),
        private=False,
        gated=_gated(session, release, tiers),
        disabled=False,
        tags=list(dict.fromkeys(tags)),
        pipeline_tag=pipeline_tag if isinstance(pipeline_tag, str) else None,
        library_name=library_name if isinstance(library_name, str) else "transformers",
        siblings=[HubSibling(rfilename=f.path, size=f.size, blobId=f.sha256[:40]) for f in files],
        cardData=meta or None,
        tiergate={
            "version": release.version,
            "tier": ref.tier.tier,
            "revision": ref.revision,
            "status": release.status,
            "statement_digest": release.statement_digest,
            "manifest_digest": ref.tier.manifest_digest,
            "signer_key_id": release.signer_key_id,
            "tiers": {t.tier: {"gated": t.gated} for t in every_tier},
        },
    )


def _resolve(
    session: Session, repo_id: str, revision: str | None, viewer: Principal | None
) -> TierRef:
    try:
        ref = downloads.resolve_revision(session, repo_id, revision, viewer=viewer)
    except RevisionNotFound:
        # `main`/`optimized` skip yanked versions; when nothing else is left, say why.
        try:
            current: Release | None = catalog.current_release(session, repo_id, viewer)
        except NotFound:
            current = None
        if current is not None:
            tiers = (t.tier for t in release_tiers(session, current))
            if (revision or DEFAULT_REVISION) in {DEFAULT_REVISION, OPEN_TIER, *tiers}:
                check_not_yanked(current)
        raise
    check_not_yanked(ref.release)
    return ref


def model_info(
    session: Session, repo_id: str, revision: str | None, *, viewer: Principal | None
) -> HubModelInfo:
    """``/api/models/{repo}`` (``revision`` None: repository level) or ``.../revision/{rev}``."""
    ref = _resolve(session, repo_id, revision, viewer)
    return _info(session, ref, repo_level=revision is None, with_files=True)


def list_models(
    session: Session,
    viewer: Principal | None,
    *,
    limit: int | None,
    cursor: str | None,
    author: str | None,
    search: str | None,
    full: bool,
) -> tuple[list[HubModelInfo], str | None]:
    """One page of repositories (latest published version's open tier) and the next cursor."""
    page = catalog.page_repositories(
        session,
        limit=min(limit or catalog.DEFAULT_PAGE, catalog.MAX_PAGE),
        cursor=cursor,
        author=author,
        search=search,
    )
    items = []
    for repo_id in page.items:
        try:
            ref = downloads.resolve_revision(session, repo_id, None, viewer=viewer)
        except NotFound:
            continue  # published versions without an open tier: nothing to list
        items.append(_info(session, ref, repo_level=True, with_files=full))
    return items, page.next_cursor
