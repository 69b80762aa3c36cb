"""The connect flow's queries: connect sessions and the authorization flows they start.

What the rows mean (tokens, lifetimes, single-use states) is :mod:`freshtoken.connect.sessions`
and :mod:`freshtoken.connect.flow`. Each function runs in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from freshtoken.store.models import ConnectSession, OAuthSession


def add_connect_session(session: Session, row: ConnectSession) -> None:
    """Insert a connect session; flushed so its id is known to the caller."""
    session.add(row)
    session.flush()


def connect_session_by_token_hash(session: Session, token_hash: str) -> ConnectSession | None:
    """The connect session whose token has this digest (expired or not), or None."""
    return session.scalars(
        select(ConnectSession).where(ConnectSession.token_hash == token_hash)
    ).one_or_none()


def delete_connect_session(session: Session, row: ConnectSession) -> None:
    """Delete a connect session and every flow it started."""
    session.execute(delete(OAuthSession).where(OAuthSession.connect_session_id == row.id))
    session.delete(row)


def purge_expired(session: Session, now: dt.datetime) -> None:
    """Delete expired connect sessions and authorization flows (and the flows of the former)."""
    session.execute(delete(OAuthSession).where(OAuthSession.expires_at <= now))
    expired = select(ConnectSession.id).where(ConnectSession.expires_at <= now)
    session.execute(delete(OAuthSession).where(OAuthSession.connect_session_id.in_(expired)))
    session.execute(delete(ConnectSession).where(ConnectSession.expires_at <= now))


def add_oauth_session(session: Session, row: OAuthSession) -> None:
    """Insert an authorization flow; flushed because its id is part of its secrets' AAD."""
    session.add(row)
    session.flush()


def claim_oauth_session(session: Session, state_hash: str) -> OAuthSession | None:
    """Delete the flow with this state digest and return it, detached (None: unknown or taken).

    The DELETE's row count decides who owns a state used twice at once: exactly one caller.
    """
    row = session.scalars(
        select(OAuthSession).where(OAuthSession.state_hash == state_hash)
    ).one_or_none()
    if row is None:
        return None
    result = session.execute(
        delete(OAuthSession).where(OAuthSession.id == row.id),
        execution_options={"synchronize_session": False},
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    session.expunge(row)
    return row


def connect_session_by_id(session: Session, pk: int | None) -> ConnectSession | None:
    """The connect session with this id, or None (also for no id)."""
    return session.get(ConnectSession, pk) if pk is not None else None
