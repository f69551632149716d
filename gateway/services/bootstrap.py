"""The first start of a gateway: an admin account on an empty database, exactly once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from gateway.db.models import Role, User
from gateway.errors import Conflict
from gateway.services import accounts

__all__ = ["bootstrap_admin"]


def bootstrap_admin(engine: Engine, *, now: datetime) -> str | None:
    """Create user ``admin`` and return its first API token, if the database has no users.

    None when users exist, or when another replica starting on the same empty database won
    the race (it prints the token; this one just serves).
    """
    with Session(engine) as session:
        if session.exec(select(User)).first() is not None:
            return None
        try:
            user = accounts.create_user(session, "admin", Role.admin)
            issued = accounts.issue_token(session, user, name="bootstrap", now=now)
            session.commit()
        except (IntegrityError, Conflict):
            session.rollback()
            return None
        return issued.plaintext
