"""Paged listings of releases and repositories, visibility applied in SQL.

Keyset pagination (``WHERE key > cursor ORDER BY key LIMIT n``) rather than offsets: a page
costs the same however deep it is, and rows published between two requests neither repeat nor
vanish from the walk. The cursor is opaque to clients (base64url JSON of the last key) but not
secret: every page re-applies the viewer's visibility, so a forged cursor reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_
from sqlmodel import Session, col, select

from gateway.auth.principal import Principal
from gateway.db.models import Release, ReleaseStatus
from gateway.errors import NotFound, ValidationFailed
from gateway.services import releases

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "InvalidCursor",
    "Page",
    "current_release",
    "decode_cursor",
    "encode_cursor",
    "page_releases",
    "page_repositories",
]

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"
    title = "Invalid cursor"


@dataclass(frozen=True)
class Page:
    """One page of rows and the cursor of the next page (None on the last one)."""

    items: list[Any]
    next_cursor: str | None


def encode_cursor(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """The key a cursor carries, checked against ``shape`` (one type per key part)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("the cursor is not one this gateway issued") from exc
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or not all(type(part) is kind for part, kind in zip(key, shape, strict=True))
    ):
        raise InvalidCursor("the cursor is not one this gateway issued")
    return key


def _visible(viewer: Principal | None) -> ColumnElement[bool]:
    public = col(Release.status) != ReleaseStatus.pending.value
    if viewer is not None and viewer.org_id is not None:
        return or_(public, col(Release.org_id) == viewer.org_id)
    return public


def _filters(author: str | None, search: str | None) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if author:
        clauses.append(col(Release.repo_id).startswith(f"{author}/", autoescape=True))
    if search:
        clauses.append(func.lower(col(Release.repo_id)).contains(search.lower(), autoescape=True))
    return clauses


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def page_releases(
    session: Session,
    viewer: Principal | None,
    *,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    author: str | None = None,
    search: str | None = None,
) -> Page:
    """Releases the viewer may see, ordered by (repo id, creation), one page at a time."""
    limit = _check_limit(limit)
    query = select(Release).where(_visible(viewer), *_filters(author, search))
    if cursor is not None:
        repo_id, row_id = decode_cursor(cursor, (str, int))
        query = query.where(
            or_(
                col(Release.repo_id) > repo_id,
                and_(col(Release.repo_id) == repo_id, col(Release.id) > row_id),
            )
        )
    query = query.order_by(col(Release.repo_id), col(Release.id)).limit(limit + 1)
    rows = list(session.exec(query))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    next_cursor = encode_cursor([last.repo_id, last.id]) if last is not None else None
    return Page(rows, next_cursor)


def page_repositories(
    session: Session,
    *,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    author: str | None = None,
    search: str | None = None,
) -> Page:
    """Repository ids with at least one published version, ordered by id, one page at a time.

    Only published versions count: a repository is browsable once something in it can be
    downloaded (pending ones belong to their org's own listing, yanked ones to history).
    """
    limit = _check_limit(limit)
    query = (
        select(col(Release.repo_id))
        .where(col(Release.status) == ReleaseStatus.published.value, *_filters(author, search))
        .distinct()
    )
    if cursor is not None:
        (after,) = decode_cursor(cursor, (str,))
        query = query.where(col(Release.repo_id) > after)
    query = query.order_by(col(Release.repo_id)).limit(limit + 1)
    repo_ids = [str(r) for r in session.exec(query)]
    more = len(repo_ids) > limit
    repo_ids = repo_ids[:limit]
    return Page(repo_ids, encode_cursor([repo_ids[-1]]) if more else None)


def current_release(session: Session, repo_id: str, viewer: Principal | None) -> Release:
    """The version a bare ``ORG/NAME`` names: the newest published one, or, when every
    version is yanked, the newest yanked one, so that its page and the detection of its text
    say why instead of answering 404 (yanked text stays evidence)."""
    try:
        return releases.find_release(session, repo_id, None, viewer=viewer)
    except NotFound:
        pass
    yanked = session.exec(
        select(Release)
        .where(Release.repo_id == repo_id, Release.status == ReleaseStatus.yanked.value)
        .order_by(col(Release.yanked_at).desc(), col(Release.id).desc())
        .limit(1)
    ).first()
    if yanked is None:
        raise NotFound(f"no published version of {repo_id!r}")
    return yanked
