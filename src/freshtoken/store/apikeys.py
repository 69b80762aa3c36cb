"""The API key table's queries (what keys mean and how they are checked: freshtoken.apikeys)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from freshtoken.store.models import ApiKey


def add_api_key(session: Session, row: ApiKey) -> None:
    """Insert a key row; flushed so its id is known to the caller."""
    session.add(row)
    session.flush()


def all_api_keys(session: Session) -> list[ApiKey]:
    """Every key row, oldest first (revoked ones included)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def live_api_keys(session: Session) -> list[ApiKey]:
    """The key rows that are not revoked."""
    return list(session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))))
