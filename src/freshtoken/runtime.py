"""The runtime: everything a process needs, built once from settings and passed in.

The API, the Celery worker and the CLI each build one :class:`Runtime` at start-up. Side effects
(clock, HTTP client, Redis) are fields, so tests construct a Runtime with fakes.

This module is also where a process is wired: :func:`build_runtime` builds the refresh core with
its locks, stash, rate limiter and in-flight marks (Redis-backed, or local ones in embedded mode)
and installs the webhook outbox; the collaborators only some processes use (the connect flow's
HTTP client, the WebSocket hub, the webhook sender, a task producer) are built on first use by the
runtime's methods and closed with it. Nothing this module imports imports it back.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from freshtoken.clock import Clock, SystemClock
from freshtoken.connect.ws import WebSocketHub
from freshtoken.crypto import Cipher
from freshtoken.db.engine import make_engine, make_session_factory, session_scope
from freshtoken.providers.catalog import ProviderCatalog, load_catalog
from freshtoken.refresh.filelocks import FileLocks, local_lock_dir
from freshtoken.refresh.http import ProviderHttp
from freshtoken.refresh.inflight import LocalInFlightMarks, RedisInFlightMarks
from freshtoken.refresh.locks import LockProvider, RedisLocks
from freshtoken.refresh.pending import LocalPendingWrites, RedisPendingWrites
from freshtoken.refresh.policy import plan_next_refresh
from freshtoken.refresh.ratelimit import LocalRateLimiter, RedisRateLimiter
from freshtoken.refresh.seam import NoRefresh, ReadRefresher
from freshtoken.refresh.service import RefreshService
from freshtoken.settings import Settings
from freshtoken.store.asyncread import AsyncReader
from freshtoken.store.fetchstamps import FetchStamps
from freshtoken.store.models import Connection
from freshtoken.store.repository import ConnectionStore
from freshtoken.webhooks.delivery import WebhookSender, build_webhook_client
from freshtoken.webhooks.outbox import WebhookConfig, install
from freshtoken.worker.config import WEBHOOK_TASK, celery_config

if TYPE_CHECKING:
    import redis

    from freshtoken.mockprovider import MockProvider


class TaskSender(Protocol):
    """Publishes a Celery task by name: a Celery app, or a test's fake that records the ids."""

    def send_task(self, name: str, args: Sequence[Any] | None = None) -> object:
        """Queue task ``name`` with positional ``args``."""
        ...


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
    # The refresh core (also ``refresher``); None in a runtime built ``with_refresher=False``.
    refresh_service: RefreshService | None = None
    # The token endpoints' client, shared by every refresh of this process (the API closes it on
    # its own event loop at shutdown).
    provider_http: ProviderHttp | None = None
    # Where this process publishes tasks (webhook deliveries): the worker's or embedded worker's
    # Celery app once there is one, else a producer built on first use (:meth:`task_sender`).
    celery_app: TaskSender | None = None
    # Set by the embedded worker (``freshtoken dev``): its beat thread stops when this is set.
    embedded_stop: threading.Event | None = None
    # ``freshtoken dev --demo``: the in-process mock provider, held for the process's life.
    demo_provider: MockProvider | None = None
    fetch_stamps: FetchStamps = field(init=False)
    reader: AsyncReader = field(init=False)  # the API's async read path
    # Built on first use (see the methods below) and closed by close().
    _connect_http: httpx.Client | None = field(default=None, init=False, repr=False)
    _webhook_http: httpx.Client | None = field(default=None, init=False, repr=False)
    _webhook_sender: WebhookSender | None = field(default=None, init=False, repr=False)
    _ws_hub: WebSocketHub | None = field(default=None, init=False, repr=False)
    # Threads (the thread pool, the connect flow's worker threads) may ask for the same one at
    # once: build each once, so no client is left unclosed.
    _build_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

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

    def require_refresh_service(self) -> RefreshService:
        """The refresh core; raises when this runtime was built without one."""
        if self.refresh_service is None:
            raise RuntimeError("this runtime was built without the refresh service")
        return self.refresh_service

    def task_sender(self) -> TaskSender:
        """Where to publish tasks: ``celery_app``, or a producer on the settings' broker.

        The producer only publishes (by task name), so the API and the CLI hand webhook
        deliveries to the workers without building a worker app.
        """
        with self._build_lock:
            if self.celery_app is None:
                self.celery_app = build_producer(self.settings)
            return self.celery_app

    def connect_http_client(self) -> httpx.Client:
        """The connect flow's token-endpoint client (sync: the flow runs in a worker thread).

        The code exchange still goes through :func:`freshtoken.refresh.grants.send`, which
        applies the outbound policy, refuses redirects and caps the answer within the provider
        deadline, as for refreshes.
        """
        with self._build_lock:
            if self._connect_http is None:
                s = self.settings
                self._connect_http = httpx.Client(
                    timeout=httpx.Timeout(
                        connect=s.http_connect_timeout,
                        read=s.http_read_timeout,
                        write=s.http_read_timeout,
                        pool=s.http_connect_timeout,
                    ),
                    follow_redirects=False,
                    headers={"User-Agent": "freshtoken"},
                )
            return self._connect_http

    def webhook_sender(self) -> WebhookSender:
        """This process's webhook sender (with its own HTTP client)."""
        with self._build_lock:
            if self._webhook_sender is None:
                self._webhook_http = build_webhook_client(self.settings)
                self._webhook_sender = WebhookSender(
                    settings=self.settings,
                    session_factory=self.session_factory,
                    clock=self.clock,
                    http=self._webhook_http,
                )
            return self._webhook_sender

    def websocket_hub(self) -> WebSocketHub:
        """This process's WebSocket hub for the connect flow (relayed through Redis if any)."""
        with self._build_lock:
            if self._ws_hub is None:
                self._ws_hub = WebSocketHub(self.redis)
            return self._ws_hub

    def close(self) -> None:
        """Write pending read stamps and release pooled connections."""
        self.fetch_stamps.close()
        self.engine.dispose()
        for client in (self._connect_http, self._webhook_http):
            if client is not None:
                client.close()
        if self.refresh_service is not None:
            self.refresh_service.close()  # the sync shim's loop thread


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
    attach_webhooks(runtime)  # auth webhooks, recorded in the state change's transaction
    if with_refresher:
        attach_refresh_service(runtime)
    return runtime


def build_http_client(settings: Settings) -> ProviderHttp:
    """The HTTP client for token endpoints: one overall deadline, capped body, no redirects."""
    return ProviderHttp(settings)


def attach_refresh_service(runtime: Runtime) -> RefreshService:
    """Build the refresh service for a runtime and install it as the read API's refresher."""
    http = runtime.provider_http or build_http_client(runtime.settings)
    runtime.provider_http = http
    # Without Redis: OS file locks, shared by every process on this machine (issue 10).
    locks: LockProvider = (
        RedisLocks(runtime.redis)
        if runtime.redis is not None
        else FileLocks(local_lock_dir(runtime.settings))
    )
    service = RefreshService(
        settings=runtime.settings,
        session_factory=runtime.session_factory,
        cipher=runtime.cipher,
        catalog=runtime.catalog,
        clock=runtime.clock,
        http=http,
        locks=locks,
        pending=(
            RedisPendingWrites(runtime.redis) if runtime.redis is not None else LocalPendingWrites()
        ),
        rate_limiter=(
            RedisRateLimiter(runtime.redis) if runtime.redis is not None else LocalRateLimiter()
        ),
        inflight=(
            RedisInFlightMarks(runtime.redis) if runtime.redis is not None else LocalInFlightMarks()
        ),
    )
    runtime.refresher = service
    runtime.refresh_service = service
    return service


def attach_webhooks(runtime: Runtime) -> bool:
    """Record auth webhooks in this runtime's sessions when a URL is configured (True if so).

    After commit the new rows are sent to the delivery task through :meth:`Runtime.task_sender`
    (the process's Celery app, or a producer built on first use).
    """
    config = WebhookConfig.from_settings(runtime.settings)
    if not config.enabled:
        return False

    def enqueue(outbox_id: int) -> None:
        runtime.task_sender().send_task(WEBHOOK_TASK, args=(outbox_id,))

    install(runtime.session_factory, config, runtime.clock, enqueue)
    return True


def build_producer(settings: Settings) -> TaskSender:
    """A Celery app that only publishes, on the broker and queue of these settings."""
    # Imported here, not at the top: Celery takes a while to import, and the API and most CLI
    # commands never publish a task (this is not a way around an import cycle).
    from celery import Celery

    app = Celery("freshtoken", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
