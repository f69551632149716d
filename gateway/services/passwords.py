"""Setting a web sign-in password: one home for the rule, and a log entry for the change.

The CLI used to hash and store the password itself, so the change left no trace in the
transparency log; now every driver that sets a password goes through here.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from gateway.auth.passwords import hash_password
from gateway.db.models import User
from gateway.ledger.events import Actor, record_event
from gateway.services.accounts import get_user

__all__ = ["set_password"]


def set_password(
    session: Session, username: str, password: str, *, actor: Actor, now: datetime
) -> User:
    """Hash and store ``password`` for ``username``; logged as ``account.password_set``.

    The entry names who set it and for whom, never the password or its hash.
    """
    user = get_user(session, username)
    user.password_hash = hash_password(password)
    session.add(user)
    record_event(
        session,
        action="account.password_set",
        actor=actor,
        resource=f"user:{user.username}",
        org_id=user.org_id,
        now=now,
    )
    return user
