"""Processes that heal: SIGTERM is a warm shutdown, a broker outage is waited out (issue #16).

Real ``freshtoken api``/``worker``/``beat`` processes against a private PostgreSQL cluster and a
private Redis (the fault-test stack of ``test_faults.py``), and the in-process mock provider with
rotation and reuse detection: a refresh token lost or spent twice shows up as ``invalid_grant``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import httpx
import pytest

from tests.e2e_helpers import Proc, wait_until
from tests.integration.test_faults import (  # the fixture and helpers of the fault tests
    AUTH,
    FaultStack,
    StackFactory,
    _quiet_http_client_logs,  # noqa: F401 (an autouse fixture, re-exported to this module)
    get_connection,
    make_stack,  # noqa: F401 (the stack fixture, re-exported to this module)
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

# The provider answers after this long: long enough to signal a process mid-call, well inside
# the provider deadline (connect 2 s + read 5 s) and the lock TTL.
LATENCY = 2.5


def _wait_for_provider_call(stack: FaultStack, before: int, procs: list[Proc]) -> None:
    wait_until(
        lambda: stack.provider.stats()["token_calls"] > before,
        30,
        "a refresh to reach the provider",
        procs=procs,
    )


def _exit_code(proc: Proc, timeout: float) -> int | None:
    try:
        return proc.popen.wait(timeout=timeout)
    except Exception:  # still running: the caller's assertion says so
        return None


@pytest.mark.timeout(120)
def test_worker_sigterm_finishes_the_in_flight_refresh_and_stores_it(
    make_stack: StackFactory,  # noqa: F811
) -> None:
    """SIGTERM (as ``docker stop`` sends it, to the main process) while a scheduled refresh
    waits on the provider: the worker finishes it, stores the rotated tokens and exits 0 within
    the provider deadline; nothing is spent twice."""
    stack = make_stack()
    pk = stack.add("due", expires_in=600)
    stack.provider.configure(latency_seconds=LATENCY)
    worker = stack.fleet.worker("worker", concurrency=1)
    beat = stack.fleet.beat("beat")
    _wait_for_provider_call(stack, 0, [worker, beat])
    beat.stop()
    os.kill(worker.pid, signal.SIGTERM)
    signalled = time.monotonic()
    code = _exit_code(worker, 20)
    took = time.monotonic() - signalled
    assert code == 0, worker.tail()
    assert took < 2 + 5 + 5, f"warm shutdown took {took:.1f}s"
    row = stack.row(pk)
    assert row.version == 2, worker.tail()
    assert stack.provider.is_access_token_valid(stack.access_token(pk))
    stats = stack.provider.stats()
    assert (stats["refresh_calls"], stats["invalid_grant"]) == (1, 0)
    outcomes = [e["outcome"] for e in worker.events("token.refresh")]
    assert outcomes == ["success"]


@pytest.mark.timeout(120)
def test_api_sigterm_finishes_the_in_flight_read_refresh_and_stores_it(
    make_stack: StackFactory,  # noqa: F811
) -> None:
    """SIGTERM to the API while a read waits on the provider for a refresh: the read is answered
    200 with the new token, the tokens are stored, and the API shuts down in order."""
    stack = make_stack()
    pk = stack.add("expired", expires_in=-30)
    stack.unschedule(pk)
    api, base = stack.start_api()
    stack.provider.configure(latency_seconds=LATENCY)
    answer: dict[str, httpx.Response] = {}

    def read() -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
            answer["read"] = get_connection(client, "expired")

    reader = threading.Thread(target=read)
    reader.start()
    _wait_for_provider_call(stack, 0, [api])
    os.kill(api.pid, signal.SIGTERM)
    reader.join(30)
    code = _exit_code(api, 20)
    response = answer.get("read")
    assert response is not None and response.status_code == 200, response and response.text
    token = response.json()["credentials"]["access_token"]
    assert stack.provider.is_access_token_valid(token)
    assert stack.row(pk).version == 2
    assert stack.access_token(pk) == token
    # uvicorn re-raises the signal after its graceful shutdown: "killed by SIGTERM" is its clean
    # exit (systemd and Kubernetes count it as such); the log proves the shutdown was orderly.
    assert code in (0, -signal.SIGTERM), api.tail()
    assert str(api.logs()[-1]["event"]).startswith("Finished server process"), api.tail()
    assert stack.provider.stats()["invalid_grant"] == 0


@pytest.mark.timeout(150)
def test_worker_alive_or_restarted_by_supervisor_refreshes_within_30s_after_redis_returns(
    make_stack: StackFactory,  # noqa: F811
) -> None:
    """Redis stops for 10 s under a running worker and beat. A supervisor (like compose's
    ``restart:``) restarts a process that exits; refreshes resume within 30 s after Redis is
    back. Whether the worker stayed alive or was restarted is logged and bounded: it may exit
    (kombu's restore_unacked bug) but must then exit non-zero quickly, never hang."""
    stack = make_stack()
    worker = stack.fleet.worker("worker", concurrency=2)
    beat = stack.fleet.beat("beat")
    before = stack.add("before", expires_in=600)
    wait_until(lambda: stack.row(before).version >= 2, 30, "a first refresh", procs=[worker])
    procs = {"worker": worker, "beat": beat}
    restarts: list[tuple[str, int | None]] = []
    stop = threading.Event()

    def supervise() -> None:
        while not stop.wait(0.5):
            for name, proc in list(procs.items()):
                if not proc.alive():
                    restarts.append((name, proc.popen.returncode))
                    procs[name] = (
                        stack.fleet.worker(f"{name}-{len(restarts)}", concurrency=2)
                        if name == "worker"
                        else stack.fleet.beat(f"{name}-{len(restarts)}")
                    )

    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()
    try:
        stack.redis.stop()
        time.sleep(10)
        stack.redis.start()
        up = time.monotonic()
        due = [stack.add(f"due-{i}", expires_in=600) for i in range(5)]
        wait_until(
            lambda: all(r.version >= 2 for r in stack.rows(due)),
            30,
            "refreshes to resume after Redis returned",
            procs=[],
            details=lambda: procs["worker"].tail(),
        )
        healed = time.monotonic() - up
    finally:
        stop.set()
        supervisor.join(5)
    log.info("redis outage: refreshes resumed %.1fs after Redis returned (%s)", healed, restarts)
    # An exit is allowed only as a failure exit (so a supervisor restarts it), never a clean 0.
    assert all(code not in (0, None) for _name, code in restarts), restarts
    for proc in procs.values():
        assert proc.alive(), proc.tail()
    assert stack.provider.stats()["invalid_grant"] == 0
