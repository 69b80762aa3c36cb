"""A real freshtoken run whose JSON log lines the ops tests check the dashboards and report against.

:func:`scenario_log` drives the real code paths — the proactive scan and its scheduled refreshes,
reads through the API that refresh on read (expired and forced), a manual refresh, a refresh that
finds the token already fresh, an ``invalid_grant`` rejection, a provider 500, a lock timeout, a
fenced write, API requests answered 200, 400, 401, 404 and 424, and auth webhooks delivered,
retried after a 500 and failed on a 410 — against the in-process
:class:`~freshtoken.mockprovider.MockProvider`, with :func:`freshtoken.logs.configure_logging`
writing to a buffer. The lines are exactly what a deployment would ship to Loki. The run takes a
couple of seconds, so it happens once per test session and is shared.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi.testclient import TestClient

from freshtoken import logs
from freshtoken.api.app import create_app
from freshtoken.logs import configure_logging
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh.service import RefreshService
from freshtoken.runtime import Runtime
from freshtoken.worker.scan import Job, RefreshScanner
from tests.support import SECRET_KEY, add_oauth2_connection, make_runtime, make_settings
from tests.webhook_receiver import WebhookReceiver

AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
INTEGRATION = "mock"
_NAMED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "httpx", "httpcore")


@contextmanager
def captured_json_logs() -> Iterator[io.StringIO]:
    """Configure freshtoken's real JSON logging into a buffer; restore the previous set-up after."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_named = {
        name: (lg.handlers[:], lg.propagate, lg.level)
        for name in _NAMED_LOGGERS
        for lg in [logging.getLogger(name)]
    }
    saved_config = structlog.get_config()
    saved_secrets = set(logs._registered)
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved_root
        root.setLevel(level)
        for name, (handlers, propagate, lvl) in saved_named.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.setLevel(lvl)
        structlog.configure(**saved_config)
        logs._registered.clear()
        logs._registered.update(saved_secrets)


def _service(runtime: Runtime) -> RefreshService:
    service = runtime.require_refresh_service()
    return service


def _get(client: TestClient, connection_id: str, **params: str) -> int:
    response = client.get(
        f"/connections/{connection_id}",
        params={"provider_config_key": INTEGRATION, **params},
        headers=AUTH,
    )
    return response.status_code


def _run(runtime: Runtime, provider: MockProvider) -> dict[str, int]:
    """Every scenario step; returns the API status codes seen, by step name."""
    service = _service(runtime)
    statuses: dict[str, int] = {}

    # Proactive path: a connection inside the refresh lead is claimed by the scan and refreshed
    # by its (here: synchronous) job, exactly as the Celery task does.
    scheduled_pk, _ = add_oauth2_connection(
        runtime, provider, connection_id="ops-scheduled", expires_in=300
    )
    jobs: list[Job] = []
    report = RefreshScanner(runtime, enqueue=jobs.append).scan()
    assert report.due >= 1 and report.enqueued == len(jobs) >= 1
    for job in jobs:
        service.refresh(
            job.connection_pk, trigger=job.trigger, seen_version=job.seen_version, attempt=1
        )
    RefreshScanner(runtime, enqueue=lambda job: None).scan()  # nothing due: a quiet scan
    # Someone else already refreshed: the scheduled attempt is skipped without a provider call.
    assert service.refresh(scheduled_pk, trigger="scheduled").outcome == "skipped_fresh"
    assert service.refresh(scheduled_pk, trigger="manual", force=True).outcome == "success"

    with TestClient(create_app(runtime)) as client:
        # Reads: a fresh token is served as stored, an expired one is refreshed on read.
        add_oauth2_connection(runtime, provider, connection_id="ops-fresh")
        statuses["fresh_read"] = _get(client, "ops-fresh")
        add_oauth2_connection(runtime, provider, connection_id="ops-expired", expires_in=-30)
        statuses["on_read"] = _get(client, "ops-expired")
        statuses["forced"] = _get(client, "ops-fresh", force_refresh="true")

        # The provider rejects the refresh token: permanent, needs re-authorisation.
        add_oauth2_connection(runtime, provider, connection_id="ops-revoked", expires_in=-5)
        provider.inject("invalid_grant")
        statuses["invalid_grant"] = _get(client, "ops-revoked")
        statuses["needs_reauth"] = _get(client, "ops-revoked")

        # A provider 500 while the token still works: transient, the stored token is served.
        add_oauth2_connection(runtime, provider, connection_id="ops-flaky", expires_in=240)
        provider.inject("500")
        statuses["provider_500"] = _get(client, "ops-flaky")

        # Another holder keeps the lock: the read gives up after lock_wait_seconds.
        locked_pk, _ = add_oauth2_connection(
            runtime, provider, connection_id="ops-locked", expires_in=-1
        )
        held = service.locks.acquire(f"refresh:{locked_pk}", 30, 0)
        assert held is not None
        statuses["lock_timeout"] = _get(client, "ops-locked")
        held.release()

        # A newer write lands while this attempt talks to the provider: the CAS fences it out.
        fenced_pk, _ = add_oauth2_connection(runtime, provider, connection_id="ops-fenced")

        def newer_write(pk: int) -> None:
            with runtime.store() as store:
                row = store.get_connection_by_pk(pk)
                assert row is not None
                store.set_credentials(row, store.credentials(row))

        service.before_write = newer_write
        try:
            assert service.refresh(fenced_pk, trigger="manual", force=True).outcome == "fenced"
        finally:
            service.before_write = None

        # Plain API traffic: unauthenticated, unknown connection, unknown route, health.
        statuses["unauthenticated"] = client.get(
            "/connections/ops-fresh", params={"provider_config_key": INTEGRATION}
        ).status_code
        statuses["unknown_connection"] = _get(client, "ops-missing")
        statuses["unknown_route"] = client.get("/no-such-route", headers=AUTH).status_code
        statuses["health"] = client.get("/health").status_code

    # Auth webhooks recorded by the steps above: the first answer is a 500 (retried, then
    # delivered), the second a 410 (failed, not retried), the rest 200.
    queue: list[int] = runtime.celery_app.sent
    sender = runtime.webhook_sender()
    for outbox_id in queue:
        sender.deliver(outbox_id)
    time.sleep(0.05)  # past the (tiny) retry wait
    sender.deliver(queue[0])
    return statuses


class _Queue:
    """Stands in for Celery: the webhook rows enqueued after commit, delivered by ``_run``."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_task(self, _name: str, args: tuple[int]) -> None:
        self.sent.append(args[0])


@functools.cache
def _scenario() -> tuple[str, tuple[tuple[str, int], ...]]:
    with (
        tempfile.TemporaryDirectory(prefix="freshtoken-ops-") as tmp,
        WebhookReceiver(script=[500, 410]) as receiver,
    ):
        settings = make_settings(
            Path(tmp),
            lock_wait_seconds=0.3,
            webhook_url=receiver.url + "/hooks",
            webhook_retry_base_seconds=0.01,
        )
        runtime = make_runtime(settings)
        runtime.celery_app = _Queue()
        try:
            with (
                MockProvider(MockProviderConfig(token_lifetime_seconds=3600)) as provider,
                captured_json_logs() as stream,
            ):
                statuses = _run(runtime, provider)
        finally:
            runtime.close()
    return stream.getvalue(), tuple(sorted(statuses.items()))


def scenario_log() -> str:
    """The raw JSON lines of the scenario run (one object per line, as a process writes them)."""
    return _scenario()[0]


def scenario_statuses() -> dict[str, int]:
    """The HTTP status of each API step of the scenario (to check it ran the intended paths)."""
    return dict(_scenario()[1])


def scenario_events() -> list[dict[str, Any]]:
    """The scenario's lines, parsed; every line must be exactly one JSON object."""
    parsed: list[dict[str, Any]] = []
    for line in scenario_log().splitlines():
        value = json.loads(line)
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed
