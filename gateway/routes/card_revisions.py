"""Card revisions of a release (`/api/releases/{org}/{name}/{version}/card-revisions`):
the publisher's signed re-rendering of the card with endorsed evaluation results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from gateway.auth.principal import Principal
from gateway.deps import NowDep, OptionalPrincipal, SessionDep, require_scope
from gateway.problems import problem_responses
from gateway.schemas.releases import CardRevisionCreate, CardRevisionPublic
from gateway.services import card_revisions
from licensing.canonical import canonical_json

router = APIRouter(tags=["releases"], responses=problem_responses(401, 503))
Publisher = Annotated[Principal, Depends(require_scope("publish"))]
RevisionNumber = Annotated[int, Path(ge=1, le=1_000_000)]
_PATH = "/api/releases/{org}/{name}/{version}/card-revisions"


def _public(view: card_revisions.CardRevisionView, card: str | None = None) -> CardRevisionPublic:
    return CardRevisionPublic(
        revision=view.revision,
        digest=view.digest,
        card_sha256=view.card_sha256,
        attestations=view.attestations,
        signer_key_id=view.signer_key_id,
        log_index=view.log_index,
        created_at=view.created_at,
        statement=view.envelope,
        commits=view.commits,
        card=card,
    )


@router.post(
    _PATH,
    status_code=status.HTTP_201_CREATED,
    summary="Publish a signed card revision: the card re-rendered with endorsed evaluations.",
    responses=problem_responses(403, 404, 409, 410, 413, 422),
)
def submit(
    org: str,
    name: str,
    version: str,
    body: CardRevisionCreate,
    principal: Publisher,
    session: SessionDep,
    now: NowDep,
) -> CardRevisionPublic:
    """The gateway re-renders the card from the signed card and the attestations the
    revision names and requires the same bytes; each tier's bundle may differ from the
    signed one in `README.md` only. 409 `card_revision_stale` names the next number."""
    view = card_revisions.submit_revision(
        session,
        principal,
        f"{org}/{name}",
        version,
        envelope=canonical_json(body.statement),
        card=body.card,
        bundles={tier: canonical_json(b) for tier, b in body.bundles.items()},
        now=now,
    )
    return _public(view)


@router.get(
    _PATH,
    summary="The release's card revisions, oldest first (the last one is served on `main`).",
    responses=problem_responses(404),
)
def list_for_release(
    org: str, name: str, version: str, viewer: OptionalPrincipal, session: SessionDep
) -> list[CardRevisionPublic]:
    views = card_revisions.list_revisions(session, viewer, f"{org}/{name}", version)
    return [_public(v) for v in views]


@router.get(
    _PATH + "/{revision}",
    summary="One card revision with its README.md.",
    responses=problem_responses(404, 422),
)
def read_revision(
    org: str,
    name: str,
    version: str,
    revision: RevisionNumber,
    viewer: OptionalPrincipal,
    session: SessionDep,
) -> CardRevisionPublic:
    view, card = card_revisions.get_revision(session, viewer, f"{org}/{name}", version, revision)
    return _public(view, card)
