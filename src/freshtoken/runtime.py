"""The runtime: everything a process needs, built once from settings and passed in.

The API, the Celery worker and the CLI each build one :class:`Runtime` at start-up. Side effects
(clock, HTTP client, Redis) are fields, so tests construct a Runtime with fakes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from freshtoken.clock import Clock, SystemClock
from freshtoken.crypto import Cipher
from freshtoken.db.engine import make_engine, make_session_factory, session_scope
from freshtoken.providers.catalog import ProviderCatalog, load_catalog
from freshtoken.refresh.policy import plan_next_refresh
from freshtoken.refresh.seam import NoRefresh, ReadRefresher
from freshtoken.settings import Settings
from freshtoken.store.asyncread import AsyncReader
from freshtoken.store.fetchstamps import FetchStamps
from freshtoken.store.models import Connection
from freshtoken.store.repository import ConnectionStore

if TYPE_CHECKING:
    import redis


@dataclass
class Runtime:
    """Shared, long-lived collaborators of one process."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    cipher: Cipher
    catalog: ProviderCatalog
    clock: Clock
    redis: redis.Redis | None = None
    refresher: ReadRefresher = field(default_factory=NoRefresh)
    fetch_stamps: FetchStamps = field(init=False)
    reader: AsyncReader = field(init=False)  # the API's async read path
    extras: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def store(self) -> Iterator[ConnectionStore]:
        """A repository over a new session, in one transaction (commit on success)."""
        with session_scope(self.session_factory) as session:
            yield ConnectionStore(session, self.cipher, self.clock, self.plan_next_refresh)

    def plan_next_refresh(self, conn: Connection) -> dt.datetime | None:
        """When the proactive scan should next refresh ``conn`` (see refresh.policy)."""
        return plan_next_refresh(
            conn, self.catalog.get(conn.provider), self.settings, self.clock.now()
        )

    def __post_init__(self) -> None:
        self.fetch_stamps = FetchStamps(self.session_factory)
        self.reader = AsyncReader(self.settings)

    def close(self) -> None:
        """Write pending read stamps and release pooled connections."""
        self.fetch_stamps.close()
        self.engine.dispose()
        for name in ("http_client", "webhook_http_client"):
            closer = self.extras.get(name)
            if closer is not None:
                closer.close()
        service = self.extras.get("refresh_service")
        if service is not None:
            service.close()  # the sync shim's loop thread


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: Engine | None = None,
    redis_client: redis.Redis | None = None,
    with_refresher: bool = True,
) -> Runtime:
    """Build the runtime; ``with_refresher=False`` serves stored credentials as they are."""
    engine = engine or make_engine(settings)
    current, old = settings.encryption_keys()
    runtime = Runtime(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        cipher=Cipher(current, old),
        catalog=load_catalog(settings.providers_file),
        clock=clock or SystemClock(),
    )
    if redis_client is None and settings.redis_url:
        import redis as redis_lib

        # Explicit timeouts: redis-py < 8 (allowed by "redis>=5.0") defaults to none, so a Redis
        # that stops answering (frozen, partitioned) would hang every refresh on its lock forever
        # (see test_frozen_redis_does_not_hang_reads_that_need_a_refresh in test_faults.py).
        redis_client = redis_lib.Redis.from_url(
            settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )
    runtime.redis = redis_client
    from freshtoken.webhooks import attach_webhooks

    attach_webhooks(runtime)  # auth webhooks, recorded in the state change's transaction
    if with_refresher:
        # Imported here so the store and API can be used before the engine exists in a build.
        from freshtoken.refresh.service import attach_refresh_service

        attach_refresh_service(runtime)
    return runtime
