"""Catalog pages: searchable list of releases, and one release with its card, tiers and files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import Org, Release, ReleaseStatus
from gateway.deps import SessionDep
from gateway.services import releases
from gateway.web.common import page_router
from gateway.web.markdown import render_markdown
from gateway.web.render import render
from gateway.web.sessions import ViewerDep
from licensing.dsse import Envelope
from licensing.errors import LicensingError
from licensing.statements import parse_release_statement

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


def _fidelity(release: Release) -> dict[str, str]:
    try:
        payload = Envelope.from_json(release.statement_envelope.encode("utf-8")).payload
        return dict(parse_release_statement(payload).fidelity)
    except LicensingError:
        return {}


def release_context(
    request: Request, session: Session, release: Release, viewer: Principal | None
) -> dict[str, object]:
    files = releases.release_files(session, release)
    tiers = [
        {
            "row": t,
            "files": [f for f in files if f.tier == t.tier],
            "total": sum(f.size for f in files if f.tier == t.tier),
        }
        for t in releases.release_tiers(session, release)
    ]
    versions = [r for r in releases.list_releases(session, viewer) if r.repo_id == release.repo_id]
    base = str(request.base_url).rstrip("/")
    gated = [t["row"].tier for t in tiers if t["row"].gated]  # type: ignore[attr-defined]
    return {
        "title": f"{release.repo_id} {release.version}",
        "release": release,
        "org": session.get(Org, release.org_id),
        "tiers": tiers,
        "gated": gated,
        "versions": sorted(versions, key=lambda r: r.id or 0, reverse=True),
        "card": render_markdown(release.model_card),
        "fidelity": _fidelity(release),
        "approval": json.loads(release.policy_json),
        "base": base,
    }


@router.get("/models/{org}/{name}")
def release_latest(
    request: Request, org: str, name: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    principal = viewer.principal if viewer else None
    release = releases.find_release(session, f"{org}/{name}", None, viewer=principal)
    return render(request, "release.html", release_context(request, session, release, principal))


@router.get("/models/{org}/{name}/v/{version}")
def release_version(
    request: Request, org: str, name: str, version: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    principal = viewer.principal if viewer else None
    release = releases.find_release(session, f"{org}/{name}", version, viewer=principal)
    return render(request, "release.html", release_context(request, session, release, principal))
