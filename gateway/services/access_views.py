"""Lookups for listing access requests and grants: release rows, usernames, policy versions
and the grant a request produced, cached per response (lists are small and paged by owner).

The API and the web pages used to keep one cache class each; both use this one.
"""

from __future__ import annotations

from sqlmodel import Session, select

from gateway.db.models import Grant, PolicyVersion, Release, User

__all__ = ["AccessNames"]


class AccessNames:
    """Per-response caches; ``user(None)`` is None (a decision made by the policy)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._releases: dict[int, Release] = {}
        self._users: dict[int, str] = {}
        self._versions: dict[int, int] = {}

    def release(self, release_id: int) -> Release:
        if release_id not in self._releases:
            row = self.session.get(Release, release_id)
            assert row is not None
            self._releases[release_id] = row
        return self._releases[release_id]

    def user(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        if user_id not in self._users:
            row = self.session.get(User, user_id)
            self._users[user_id] = row.username if row else f"user-{user_id}"
        return self._users[user_id]

    def policy_version(self, version_id: int) -> int:
        if version_id not in self._versions:
            row = self.session.get(PolicyVersion, version_id)
            self._versions[version_id] = row.version if row else 0
        return self._versions[version_id]

    def grant_of(self, request_id: int | None) -> int | None:
        """The id of the grant an approved request produced, if any."""
        if request_id is None:
            return None
        found = self.session.exec(select(Grant.id).where(Grant.request_id == request_id)).first()
        return int(found) if found is not None else None
