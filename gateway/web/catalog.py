"""Catalog pages: searchable list of releases, and one release with its card, tiers and files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import Release, ReleaseStatus
from gateway.deps import NowDep, SessionDep
from gateway.services import release_page, releases, reports
from gateway.services.catalog import current_release
from gateway.web.common import page_router
from gateway.web.markdown import render_markdown
from gateway.web.render import render
from gateway.web.sessions import ViewerDep

router = page_router()


@dataclass
class RepoCard:
    repo_id: str
    org: str
    latest: Release
    versions: list[str] = field(default_factory=list)
    gated_tiers: list[str] = field(default_factory=list)


def _repos(session: Session, viewer: Principal | None) -> list[RepoCard]:
    cards: dict[str, RepoCard] = {}
    for row in releases.list_releases(session, viewer):
        card = cards.get(row.repo_id)
        if card is None:
            card = cards[row.repo_id] = RepoCard(row.repo_id, row.repo_id.split("/")[0], row)
        card.versions.append(row.version)
        # Prefer the newest published version as the one the catalog describes.
        if row.status == ReleaseStatus.published.value and (
            card.latest.status != ReleaseStatus.published.value
            or (row.published_at or row.created_at)
            >= (card.latest.published_at or card.latest.created_at)
        ):
            card.latest = row
    for card in cards.values():
        card.gated_tiers = [t.tier for t in releases.release_tiers(session, card.latest) if t.gated]
    return sorted(cards.values(), key=lambda c: c.repo_id)


@router.get("/")
def catalog(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    q: Annotated[str, Query(max_length=100)] = "",
    org: Annotated[str, Query(max_length=64)] = "",
    license: Annotated[str, Query(max_length=64)] = "",
    gated: Annotated[str, Query(pattern="^(|any|gated|open)$")] = "",
) -> Response:
    principal = viewer.principal if viewer else None
    repos = _repos(session, principal)
    orgs = sorted({c.org for c in repos})
    licenses = sorted({c.latest.license for c in repos if c.latest.license})
    needle = q.strip().lower()
    shown = [
        c
        for c in repos
        if (not needle or needle in c.repo_id.lower() or needle in c.latest.model_card.lower())
        and (not org or c.org == org)
        and (not license or c.latest.license == license)
        and (gated in ("", "any") or (gated == "gated") == bool(c.gated_tiers))
    ]
    context = {
        "title": "Models",
        "repos": shown,
        "total": len(repos),
        "orgs": orgs,
        "licenses": licenses,
        "filters": {"q": q, "org": org, "license": license, "gated": gated or "any"},
    }
    return render(request, "catalog.html", context)


def release_context(
    request: Request, session: Session, release: Release, viewer: Principal | None, now: datetime
) -> dict[str, object]:
    page = release_page.release_page(session, release, viewer, now=now)
    return {
        "title": f"{release.repo_id} {release.version}",
        "page": page,
        "release": release,
        "org": page.org,
        "tiers": page.tiers,
        "versions": page.versions,
        "card": render_markdown(page.card),
        "base": str(request.base_url).rstrip("/"),
        "report_categories": reports.CATEGORIES,
    }


@router.get("/models/{org}/{name}")
def release_latest(
    request: Request, org: str, name: str, viewer: ViewerDep, session: SessionDep, now: NowDep
) -> Response:
    principal = viewer.principal if viewer else None
    # The newest published version; when all are yanked, the newest yanked one with its reason.
    release = current_release(session, f"{org}/{name}", principal)
    return render(
        request, "release.html", release_context(request, session, release, principal, now)
    )


@router.get("/models/{org}/{name}/v/{version}")
def release_version(
    request: Request,
    org: str,
    name: str,
    version: str,
    viewer: ViewerDep,
    session: SessionDep,
    now: NowDep,
) -> Response:
    principal = viewer.principal if viewer else None
    release = releases.find_release(session, f"{org}/{name}", version, viewer=principal)
    return render(
        request, "release.html", release_context(request, session, release, principal, now)
    )
