"""What a release's web page shows: tiers, files, how to download, and the viewer's access.

The page is a driver; every rule it displays (which command pulls a tier, whether the viewer
holds a live grant, which card sections it shows) is decided here, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.db.models import (
    CardRevisionRecord,
    Org,
    Release,
    ReleaseFile,
    ReleaseStatus,
    ReleaseTier,
)
from gateway.services import releases
from gateway.services.access import active_grant
from gateway.services.card_revisions import latest_revision
from gateway.services.evaluation_attestations import attested_scores
from gateway.services.grants import grant_tier_of
from gateway.services.hub import approval_mode
from gateway.services.releases import OPEN_TIER
from release.card_sections import GENERATED_BEGIN, GENERATED_END
from release.evals.compare import evaluation_lines

__all__ = [
    "ReleasePage",
    "TierView",
    "card_for_page",
    "card_revision_line",
    "pull_command",
    "release_page",
    "versions_comparison",
]

# The page lists every file with its sha256 in its own table; the card's copy is dropped so
# each digest appears once (the signed README.md itself is unchanged).
# Sections of the card the page shows its own way: the file tables (each digest once) and
# the usage commands (the access box at the top, per viewer). The card keeps both for the
# places that show it whole: the tier's README.md and the Hub API.
_PAGE_OWNED_SECTIONS = ("file digests", "how to use")
_H2 = re.compile(r"^##\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class TierView:
    row: ReleaseTier
    files: list[ReleaseFile]
    total: int
    revision: str
    pull: str
    # The viewer's live grant on a gated tier: when it ends (None: no grant or open tier).
    grant_until: datetime | None
    # The tier whose grant opens this one (itself, or `optimized` for a further artifact
    # its publisher did not give its own grant).
    grant_tier: str = ""


@dataclass(frozen=True)
class ReleasePage:
    release: Release
    org: Org | None
    tiers: list[TierView]
    versions: list[Release]
    card: str
    approval: str
    open_pull: str
    # Gated tiers the viewer cannot download yet: the call to action names them.
    locked: list[str]
    # Gated tiers the viewer holds a live grant for.
    unlocked: list[TierView]


def card_for_page(card: str) -> str:
    """The card's Markdown minus the sections the page shows itself (file digests, usage)."""
    out: list[str] = []
    skipping = False
    fenced = False
    for line in card.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else _H2.match(line)
        if heading is not None:
            skipping = heading.group(1).strip().lower() in _PAGE_OWNED_SECTIONS
        # The generated-block markers are HTML comments, which the page (raw HTML off)
        # would show as text.
        if not skipping and line.strip() not in (GENERATED_BEGIN, GENERATED_END):
            out.append(line)
    return "\n".join(out)


def versions_comparison(versions: list[Release]) -> str:
    """Markdown table comparing the repository's versions (tiers, sizes, fidelity), read from
    their signed statements; empty with fewer than two versions."""
    from licensing.dsse import Envelope
    from licensing.errors import LicensingError
    from licensing.statements import ReleaseStatement, parse_release_statement
    from release.card_compare import version_comparison_lines

    statements: list[ReleaseStatement] = []
    for row in versions:
        if row.status == ReleaseStatus.pending.value:
            continue
        try:
            payload = Envelope.from_json(row.statement_envelope.encode("utf-8")).payload
            statements.append(parse_release_statement(payload))
        except LicensingError:
            continue  # stored statements verified at publish; never fail the page on one
    return "\n".join(version_comparison_lines(statements))


def card_revision_line(release: Release, revision: CardRevisionRecord | None) -> str:
    """A Markdown paragraph naming the latest signed card revision and linking its statement
    ("" without one). The page shows the card as first signed; the revision's card (with
    ``model-index``) is what Hub clients read on ``main``."""
    if revision is None:
        return ""
    base = f"/api/releases/{release.repo_id}/{release.version}/card-revisions"
    return (
        f"**Card revision {revision.revision}** (signed by key `{revision.signer_key_id[:16]}`): "
        f"the card served on `main` and the tier branches carries the endorsed evaluation "
        f"results; [revision statement]({base}/{revision.revision}) (sha256 "
        f"`{revision.digest[:16]}`), README.md sha256 `{revision.card_sha256[:16]}`.\n\n"
    )


def pull_command(release: Release, tier: str) -> str:
    name = release.repo_id.split("/", 1)[-1]
    suffix = "" if tier == OPEN_TIER else f"-{tier}"
    command = f"tiergate pull {release.repo_id}@{release.version} --out {name}-{release.version}"
    return command + suffix + ("" if tier == OPEN_TIER else f" --tier {tier}")


def release_page(
    session: Session, release: Release, viewer: Principal | None, *, now: datetime
) -> ReleasePage:
    files = releases.release_files(session, release)
    published = release.status == ReleaseStatus.published.value
    tiers = []
    for row in releases.release_tiers(session, release):
        grant = None
        if row.gated and viewer is not None and published:
            grant = active_grant(session, viewer, release, row.tier, now)
        mine = [f for f in files if f.tier == row.tier]
        tiers.append(
            TierView(
                row=row,
                files=mine,
                total=sum(f.size for f in mine),
                revision=f"{release.version}-{row.tier}",
                pull=pull_command(release, row.tier),
                grant_until=grant.expires_at if grant is not None else None,
                grant_tier=grant_tier_of(release, row.tier) if row.gated else "",
            )
        )
    gated = [t for t in tiers if t.row.gated]
    versions = [r for r in releases.list_releases(session, viewer) if r.repo_id == release.repo_id]
    approval = approval_mode(session, release, gated[0].row.tier) if gated else ""
    ordered = sorted(versions, key=lambda r: r.id or 0, reverse=True)
    comparison = versions_comparison(ordered)
    evaluations = "\n".join(evaluation_lines(attested_scores(session, release)))
    if evaluations:
        comparison = evaluations + ("\n\n" + comparison if comparison else "")
    card = card_revision_line(release, latest_revision(session, release)) + card_for_page(
        release.model_card
    )
    return ReleasePage(
        release=release,
        org=session.get(Org, release.org_id),
        tiers=tiers,
        versions=ordered,
        card=card + ("\n\n" + comparison if comparison else ""),
        approval=approval,
        open_pull=pull_command(release, OPEN_TIER),
        locked=[t.row.tier for t in gated if t.grant_until is None and published],
        unlocked=[t for t in gated if t.grant_until is not None],
    )
