"""The refresh schedule's column, ``next_refresh_at``: the one rule and the scan's queries.

``next_refresh_at`` is the proactive scan's due time, read through its index
(``next_refresh_at <= now``). Every store write that changes a connection's credentials or its
schedule sets it through :func:`next_refresh_at`, from the row's state *after* the write:

1. a row held by a claim (``refresh_claimed_until`` not past: the scan's lease, or the lease of a
   retry already queued) is due when the claim runs out, so no second scan enqueues it meanwhile;
2. a row the scan must leave alone (deleted, needing re-authorisation, exhausted, or not
   refreshable without the user: the planner says None) is never due;
3. a row whose last refresh failed (and that is still live) keeps its retry time, the backoff of
   :func:`freshtoken.refresh.policy.retry_after_failure`;
4. any other row is due at the planner's time (:func:`freshtoken.refresh.policy.plan_next_refresh`).

Writes that only re-encrypt (key rotation, an integration's new key) therefore leave a claimed or
failing row's due time as it was, and bring any other row's in line with the current policy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from freshtoken.store.models import Connection

Planner = Callable[[Connection], "dt.datetime | None"]


def next_refresh_at(
    conn: Connection, planner: Planner | None, now: dt.datetime
) -> dt.datetime | None:
    """When the scan should next take ``conn``, from its state after a write (the module's rule).

    Without a planner (a store built without one) nothing is planned: only claims and retry
    times stand.
    """
    claimed = conn.refresh_claimed_until
    if claimed is not None and claimed >= now:
        return claimed
    if conn.deleted_at is not None:
        return None
    planned = planner(conn) if planner is not None else None
    if planner is not None and planned is None:
        return None
    if conn.last_refresh_failure is not None and conn.next_refresh_at is not None:
        return conn.next_refresh_at
    return planned


def due_rows_statement(now: dt.datetime, batch: int, *, postgres: bool) -> Select[Any]:
    """The claim query: due rows in due order, through the ``next_refresh_at`` index.

    On PostgreSQL rows another scan has locked are skipped rather than waited for.
    """
    stmt = (
        select(Connection)
        .where(Connection.next_refresh_at <= now, Connection.deleted_at.is_(None))
        .order_by(Connection.next_refresh_at)
        .limit(batch)
    )
    if postgres:
        stmt = stmt.with_for_update(skip_locked=True, of=Connection)
    return stmt


@dataclass(frozen=True)
class Claim:
    """One claimed row: the row as read, when it was due, and when its lease runs out."""

    row: Connection
    due_at: dt.datetime | None
    lease_until: dt.datetime


def claim_due(
    session: Session,
    now: dt.datetime,
    batch: int,
    lease_of: Callable[[Connection], dt.datetime],
) -> list[Claim]:
    """Select up to ``batch`` due rows and lease each until ``lease_of(row)``, in one transaction.

    The caller's transaction holds the rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite
    serialises writers) from the SELECT to the claim's UPDATE, so overlapping scans never claim a
    row twice. ``lease_of`` sees each row as selected, in due order.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    rows: list[Connection] = list(
        session.scalars(due_rows_statement(now, batch, postgres=postgres))
    )
    # Due times and leases are taken before the UPDATE, from the rows as selected.
    claims = [Claim(row, row.next_refresh_at, lease_of(row)) for row in rows]
    values: list[dict[str, object]] = []
    for claim in claims:
        values.append(
            {
                "id": claim.row.id,
                "next_refresh_at": next_refresh_at(_leased(claim.lease_until), None, now),
                "refresh_claimed_until": claim.lease_until,
            }
        )
    if values:
        # One executemany by primary key (ORM bulk UPDATE), not one statement per row.
        session.execute(update(Connection), values)
    return claims


def extend_claim(
    session: Session, connection_pk: int, until: dt.datetime, now: dt.datetime
) -> None:
    """Lease a row until ``until`` (its retry is queued): the scan leaves it alone meanwhile.

    A row the scan has dropped (``next_refresh_at`` is NULL: deleted, re-authorisation needed,
    exhausted) is not taken back.
    """
    due = next_refresh_at(_leased(until), None, now)
    session.execute(
        update(Connection)
        .where(Connection.id == connection_pk, Connection.next_refresh_at.is_not(None))
        .values(next_refresh_at=due, refresh_claimed_until=until)
    )


def _leased(until: dt.datetime) -> Connection:
    # A transient row holding only the claim: rule 1 decides whatever else the row holds, so the
    # scan's and the retry's leases need no read of the row (and the session's objects keep the
    # values the scan planned its jobs from).
    return Connection(refresh_claimed_until=until)
