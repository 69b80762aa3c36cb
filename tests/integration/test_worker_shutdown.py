"""A real prefork ``freshtoken worker`` stops on SIGTERM within its warm-shutdown time.

SIGTERM goes to the worker's main process only, as ``docker stop`` and systemd send it: Celery's
warm shutdown stops consuming, lets the refresh already running finish (it holds a lock and may
be spending a rotating refresh token), and exits 0. Redis is the real one (the test database
number), the provider is a real HTTP mock provider that answers slowly.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.worker.celery_app import REFRESH_TASK, create_celery
from tests.e2e_helpers import Fleet, freshtoken_env, wait_until
from tests.support import (
    ENCRYPTION_KEY,
    REDIS_URL,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
    redis_client,
)

pytestmark = [pytest.mark.integration]

PROVIDER_LATENCY = 3.0
# Warm shutdown = the in-flight refresh (provider latency + bookkeeping) + Celery's own stop.
WARM_SHUTDOWN_SECONDS = PROVIDER_LATENCY + 10.0


def _sigterm_and_time(proc_pid: int, popen: object, budget: float) -> float:
    started = time.monotonic()
    os.kill(proc_pid, signal.SIGTERM)  # the main process only, like `docker stop`
    popen.wait(timeout=budget)  # type: ignore[attr-defined]
    return time.monotonic() - started


def test_prefork_worker_finishes_the_running_refresh_and_exits_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM during a refresh: the refresh completes, then the worker exits 0 in time."""
    redis_client()  # flushes the test database (or skips/fails without Redis)
    settings = make_settings(tmp_path, redis_url=REDIS_URL)
    runtime = make_runtime(settings)
    env = freshtoken_env(
        database_url=settings.resolved_database_url,
        redis_url=REDIS_URL,
        data_dir=tmp_path / "data",
        secret_key=SECRET_KEY,
        encryption_key=ENCRYPTION_KEY,
        lock_ttl_seconds=10,
        http_connect_timeout=2,
        http_read_timeout=5,
    )
    with (
        MockProvider(MockProviderConfig(latency_seconds=PROVIDER_LATENCY)) as provider,
        Fleet(tmp_path / "logs", env) as fleet,
    ):
        pk, _ = add_oauth2_connection(runtime, provider, connection_id="slow")
        worker = fleet.worker("worker", concurrency=2, pool="prefork")
        app = create_celery(settings)
        app.send_task(REFRESH_TASK, args=(pk, "oauth2", "keepalive", 1))  # keep-alive forces it
        wait_until(
            lambda: provider.stats()["in_flight"] >= 1, 30, "refresh in flight", procs=[worker]
        )
        took = _sigterm_and_time(worker.pid, worker.popen, WARM_SHUTDOWN_SECONDS + 20)
        assert worker.popen.returncode == 0, worker.tail()
        assert took < WARM_SHUTDOWN_SECONDS, f"stopped after {took:.1f}s\n{worker.tail()}"
        outcomes = [e["outcome"] for e in worker.events("token.refresh")]
        assert outcomes == ["success"], worker.tail()
        assert provider.stats()["refresh_calls"] == 1
    runtime.close()


def test_embedded_prefork_worker_exits_promptly_on_sigterm(tmp_path: Path) -> None:
    """An idle `worker --embedded` (in-memory broker, beat inside) also honours SIGTERM."""
    settings = make_settings(tmp_path)
    make_runtime(settings).close()
    env = freshtoken_env(
        database_url=settings.resolved_database_url,
        redis_url="",
        data_dir=tmp_path / "data",
        secret_key=SECRET_KEY,
        encryption_key=ENCRYPTION_KEY,
    )
    with Fleet(tmp_path / "logs", env) as fleet:
        proc = fleet.start("worker", ["worker", "--embedded", "--concurrency", "2"])
        wait_until(
            lambda: any(str(e.get("event", "")).endswith(" ready.") for e in proc.logs()),
            60,
            "embedded worker ready",
            procs=[proc],
        )
        took = _sigterm_and_time(proc.pid, proc.popen, 40)
        assert proc.popen.returncode == 0, proc.tail()
        assert took < 15, f"stopped after {took:.1f}s\n{proc.tail()}"
