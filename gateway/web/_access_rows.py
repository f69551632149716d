"""Rows of access requests and grants as the developer and publisher pages list them."""

from __future__ import annotations

import json

from gateway.db.models import AccessRequest, Grant
from gateway.services import access
from gateway.services.access_views import AccessNames

__all__ = ["Names", "grant_rows", "request_rows"]


class Names(AccessNames):
    """The service's lookups; on a page a decision without a person reads "policy"."""

    def user(self, user_id: int | None) -> str:
        return super().user(user_id) or "policy"


def request_rows(names: Names, rows: list[AccessRequest]) -> list[dict[str, object]]:
    return [
        {
            "row": r,
            "release": names.release(r.release_id),
            "requester": names.user(r.user_id),
            "decided_by": names.user(r.decided_by) if r.decided_at else None,
            "fields": json.loads(r.fields_json),
        }
        for r in rows
    ]


def grant_rows(names: Names, rows: list[Grant], now: object) -> list[dict[str, object]]:
    return [
        {
            "row": g,
            "release": names.release(g.release_id),
            "grantee": names.user(g.user_id),
            "state": access.grant_state(g, now),  # type: ignore[arg-type]
        }
        for g in rows
    ]
