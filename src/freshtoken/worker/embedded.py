"""The embedded all-in-one (``freshtoken dev``): worker and beat as threads beside the API.

No Redis and no other server: Celery runs on its in-memory broker with a thread pool, and a small
beat thread publishes the scan task every ``scan_interval_seconds`` (what ``celery beat`` does in
production). ``--demo`` also starts the mock provider and imports connections whose two-minute
tokens come due within the first minute, so proactive refreshes show up in the log right away.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from freshtoken.demo import DEMO_CONNECTIONS, DEMO_LIFETIME_SECONDS, import_demo_connections
from freshtoken.logs import get_logger
from freshtoken.runtime import Runtime
from freshtoken.worker.celery_app import create_celery
from freshtoken.worker.config import QUEUE, SCAN_TASK, SWEEP_TASK

if TYPE_CHECKING:
    from freshtoken.mockprovider import MockProvider

log = get_logger("freshtoken.dev")


def start_embedded(runtime: Runtime, *, demo: bool = False) -> list[threading.Thread]:
    """Start the in-process worker and beat threads (daemon threads; they die with the API)."""
    app = create_celery(runtime.settings, runtime)
    # `celery worker` makes its app the current and default one; a bare WorkController does not,
    # and tasks would then publish retries through Celery's default app (and its amqp broker).
    app.set_current()
    app.set_default()
    worker = app.WorkController(
        pool_cls="threads",
        concurrency=4,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=runtime.settings.log_level,
        hostname="embedded@freshtoken",
        queues=[QUEUE],
    )
    worker_thread = threading.Thread(target=worker.start, name="embedded-worker", daemon=True)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            app.send_task(SCAN_TASK, expires=runtime.settings.scan_interval_seconds)
            app.send_task(SWEEP_TASK, expires=runtime.settings.scan_interval_seconds)
            stop.wait(runtime.settings.scan_interval_seconds)

    beat_thread = threading.Thread(target=beat, name="embedded-beat", daemon=True)
    if demo:
        _start_demo(runtime)
    worker_thread.start()
    beat_thread.start()
    runtime.embedded_stop = stop
    log.info("dev.embedded_started", broker="memory://", worker_pool="threads")
    return [worker_thread, beat_thread]


def _demo_connect_flow(runtime: Runtime, provider: MockProvider) -> None:
    """One more demo connection, ``demo-connected``, made through the OAuth authorization flow."""
    import httpx

    from freshtoken.connect.links import connect_headless

    endpoints = {"authorization_url": provider.url + "/authorize", "token_url": provider.token_url}
    from freshtoken.connect.flow import FlowError

    try:
        with httpx.Client(timeout=10) as http:
            connect_headless(runtime, "demo", "demo-connected", http, endpoints)
    except FlowError as exc:  # the demo still runs with its imported connections
        log.warning("dev.demo_connect_failed", error_type=exc.error_type)


def _start_demo(runtime: Runtime) -> MockProvider:
    """Run the mock provider in-process and import demo connections with 2-minute tokens."""
    from freshtoken.mockprovider import MockProvider, MockProviderConfig

    provider = MockProvider(
        MockProviderConfig(token_lifetime_seconds=DEMO_LIFETIME_SECONDS), port=0
    ).start()
    runtime.demo_provider = provider
    import_demo_connections(
        runtime,
        lambda: provider.seed(lifetime_seconds=DEMO_LIFETIME_SECONDS),
        token_url=provider.token_url,
        client_id=provider.config.client_id,
        client_secret=provider.config.client_secret,
    )
    _demo_connect_flow(runtime, provider)
    log.info(
        "dev.demo_ready",
        provider_url=provider.url,
        integration="demo",
        connections=DEMO_CONNECTIONS,
        token_lifetime_seconds=DEMO_LIFETIME_SECONDS,
    )
    return provider
