"""The webhook outbox's queries: the failed-state check, queue order, claims, results, pruning.

What the rows mean and when they are written is :mod:`freshtoken.webhooks.outbox`; how they are
sent is :mod:`freshtoken.webhooks.delivery`. Each function runs in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from freshtoken.store.models import Connection, WebhookOutbox

# Row statuses (the ``status`` column).
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


def was_failed(session: Session, connection_pk: int) -> bool:
    """Whether the row is marked failed right now (read in the caller's transaction)."""
    row = session.execute(
        select(Connection.needs_reauth, Connection.refresh_exhausted).where(
            Connection.id == connection_pk
        )
    ).one_or_none()
    return bool(row is not None and (row[0] or row[1]))


def add_outbox_rows(session: Session, rows: list[WebhookOutbox]) -> None:
    """Insert webhook rows in the caller's transaction; flushed so their ids can be enqueued."""
    session.add_all(rows)
    session.flush()


def due_heads(session: Session, now: dt.datetime, limit: int) -> list[int]:
    """Pending rows that are due, unclaimed and first in their (connection, target) queue."""
    earlier = (
        select(func.min(WebhookOutbox.id))
        .where(WebhookOutbox.status == PENDING)
        .group_by(WebhookOutbox.connection_pk, WebhookOutbox.target)
        .subquery()
    )
    stmt = (
        select(WebhookOutbox.id)
        .join(earlier, WebhookOutbox.id == earlier.c[0])
        .where(
            WebhookOutbox.next_attempt_at <= now,
            (WebhookOutbox.claimed_until.is_(None)) | (WebhookOutbox.claimed_until < now),
        )
        .order_by(WebhookOutbox.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def prune(session: Session, now: dt.datetime, retention_days: float) -> int:
    """Delete finished rows older than the retention (pending rows are never deleted)."""
    cutoff = now - dt.timedelta(days=retention_days)
    result = session.execute(
        delete(WebhookOutbox).where(
            and_(WebhookOutbox.status != PENDING, WebhookOutbox.created_at < cutoff)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def head_of_queue(session: Session, outbox_id: int) -> int | None:
    """The oldest pending row of ``outbox_id``'s (connection, target), or None if it is done."""
    row = session.get(WebhookOutbox, outbox_id)
    if row is None or row.status != PENDING:
        return None
    return session.scalar(
        select(WebhookOutbox.id)
        .where(
            WebhookOutbox.connection_pk == row.connection_pk,
            WebhookOutbox.target == row.target,
            WebhookOutbox.status == PENDING,
            WebhookOutbox.id <= row.id,
        )
        .order_by(WebhookOutbox.id)
        .limit(1)
    )


def next_in_queue(session: Session, outbox_id: int) -> int | None:
    """The pending row after ``outbox_id`` in its (connection, target) queue, or None."""
    row = session.get(WebhookOutbox, outbox_id)
    if row is None:
        return None
    return session.scalar(
        select(WebhookOutbox.id)
        .where(
            WebhookOutbox.connection_pk == row.connection_pk,
            WebhookOutbox.target == row.target,
            WebhookOutbox.status == PENDING,
            WebhookOutbox.id > row.id,
        )
        .order_by(WebhookOutbox.id)
        .limit(1)
    )


def claim_row(
    session: Session, outbox_id: int, now: dt.datetime, until: dt.datetime
) -> tuple[WebhookOutbox | None, bool]:
    """Lease a pending, due, unclaimed row until ``until``: (row as it is now, claimed?).

    The conditional UPDATE's row count decides between racing workers: exactly one claims.
    """
    claimed = session.execute(
        update(WebhookOutbox)
        .where(
            WebhookOutbox.id == outbox_id,
            WebhookOutbox.status == PENDING,
            WebhookOutbox.next_attempt_at <= now,
            (WebhookOutbox.claimed_until.is_(None)) | (WebhookOutbox.claimed_until < now),
        )
        .values(claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    return session.get(WebhookOutbox, outbox_id), getattr(claimed, "rowcount", 0) == 1


def record_attempt(session: Session, outbox_id: int, values: dict[str, Any]) -> None:
    """Write one delivery attempt's result (attempts, status, next attempt, lease released)."""
    session.execute(
        update(WebhookOutbox)
        .where(WebhookOutbox.id == outbox_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
