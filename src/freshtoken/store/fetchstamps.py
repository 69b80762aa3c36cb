"""``last_fetched_at`` stamps, written behind the read path in batches.

Every read sets ``last_fetched_at`` (Nango's contract). Writing it inside the read turned every
``GET /connections/{id}`` into a write transaction with a row lock — the largest single cost of
the hot path (``docs/benchmarks.md``). Instead the read records the stamp here and returns the
row it read; a daemon thread writes all pending stamps every ``interval`` seconds in one
``executemany`` UPDATE (the newest stamp per connection wins; a stamp never moves backwards). A
crash loses at most one interval of stamps: a timestamp, never a token.
"""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import bindparam, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from freshtoken.db.engine import session_scope
from freshtoken.logs import get_logger
from freshtoken.store.models import Connection

log = get_logger("freshtoken.store")


class FetchStamps:
    """Collects read stamps and flushes them in the background."""

    def __init__(self, session_factory: sessionmaker[Session], interval: float = 1.0) -> None:
        self._session_factory = session_factory
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: dict[int, dt.datetime] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def record(self, connection_pk: int, when: dt.datetime) -> None:
        """Remember that a connection was read at ``when`` (written within one interval)."""
        with self._lock:
            current = self._pending.get(connection_pk)
            if current is None or when > current:
                self._pending[connection_pk] = when
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="fetch-stamps", daemon=True
                )
                self._thread.start()

    def flush(self) -> int:
        """Write every pending stamp now; returns how many rows were stamped."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        params = [{"pk": pk, "stamp": when} for pk, when in batch.items()]
        stmt = (
            update(Connection)
            .where(
                Connection.id == bindparam("pk"),
                or_(
                    Connection.last_fetched_at.is_(None),
                    Connection.last_fetched_at < bindparam("stamp"),
                ),
            )
            .values(last_fetched_at=bindparam("stamp"))
            .execution_options(synchronize_session=False)
        )
        try:
            with session_scope(self._session_factory) as session:
                session.connection().execute(stmt, params)
        except SQLAlchemyError:
            # The database is away: keep the stamps for the next flush (newest wins on merge).
            with self._lock:
                for pk, when in batch.items():
                    if pk not in self._pending or self._pending[pk] < when:
                        self._pending[pk] = when
            log.warning("store.fetch_stamps.flush_failed", pending=len(batch))
            return 0
        return len(params)

    def close(self) -> None:
        """Stop the thread and write what is pending (a later record starts a new thread)."""
        with self._lock:
            thread, stop = self._thread, self._stop
            self._thread, self._stop = None, threading.Event()
        stop.set()
        if thread is not None:
            thread.join(timeout=5)
        self.flush()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            self.flush()
