"""The Celery tasks: retry policy, the refresh task body, the rate-limit gate, the embedded worker.

The refresh task runs either through ``Task.apply()`` (in this thread; a retry re-runs at once) or
through the embedded worker pattern of ``freshtoken.worker.embedded`` (``WorkController`` with the
thread pool on the in-memory broker), always against the real HTTP mock provider on SQLite.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from structlog.testing import capture_logs
from tests.e2e_helpers import RecordingMockProvider
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection
from freshtoken.worker import tasks
from freshtoken.worker.celery_app import QUEUE, REFRESH_TASK, create_celery
from freshtoken.worker.scan import Job, RefreshScanner
from freshtoken.worker.tasks import retry_countdown

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


# -- retry_countdown ------------------------------------------------------------------------------


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the task module's jitter deterministic."""
    monkeypatch.setattr(tasks, "random", random.Random(1234))


def _samples(
    retries: int, expires_in: float | None = None, retry_after: float | None = None
) -> list[float]:
    expires_at = None if expires_in is None else NOW + dt.timedelta(seconds=expires_in)
    values = [retry_countdown(retries, expires_at, NOW, retry_after) for _ in range(2000)]
    assert all(v is not None for v in values)
    return [float(v) for v in values if v is not None]


@pytest.mark.usefixtures("seeded")
def test_retry_countdown_is_full_jitter_under_an_exponential_cap() -> None:
    """Retry n waits uniformly between 0 and min(300, 2 * 2**n) seconds (full jitter)."""
    for retries, cap in ((0, 2), (1, 4), (2, 8), (3, 16), (5, 64)):
        values = _samples(retries)
        assert min(values) >= 0 and max(values) <= cap, retries
        assert min(values) < 0.05 * cap and max(values) > 0.95 * cap, retries
        mean = sum(values) / len(values)
        assert 0.45 * cap < mean < 0.55 * cap, retries


@pytest.mark.usefixtures("seeded")
def test_retry_countdown_backoff_is_capped_at_five_minutes() -> None:
    """However many retries, a backoff never exceeds 300 seconds."""
    values = _samples(30)
    assert max(values) <= 300
    assert max(values) > 285


@pytest.mark.usefixtures("seeded")
def test_retry_countdown_lands_two_seconds_before_expiry() -> None:
    """With 10 s of token left, no retry is scheduled later than 2 s before expiry."""
    values = _samples(8, expires_in=10)  # the uncapped backoff would reach 300 s
    assert max(values) == 8.0
    assert min(values) >= 0


@pytest.mark.usefixtures("seeded")
def test_retry_countdown_honours_retry_after() -> None:
    """A provider's Retry-After wins over a shorter backoff, but never pushes past expiry."""
    assert set(_samples(0, retry_after=30)) == {30.0}
    assert set(_samples(0, expires_in=3600, retry_after=30)) == {30.0}
    assert set(_samples(0, expires_in=20, retry_after=30)) == {18.0}


def test_retry_countdown_leaves_a_token_about_to_expire_to_the_scan() -> None:
    """With 2 s or less before expiry there is no retry worth scheduling: None."""
    for left in (2.0, 1.5, 0.1):
        assert retry_countdown(0, NOW + dt.timedelta(seconds=left), NOW, None) is None
    assert retry_countdown(3, NOW + dt.timedelta(seconds=1), NOW, 30.0) is None


def test_retry_countdown_keeps_backing_off_for_an_expired_token() -> None:
    """An already expired token is still retried with the normal backoff (no expiry cap)."""
    value = retry_countdown(2, NOW - dt.timedelta(seconds=30), NOW, None)
    assert value is not None and 0 <= value <= 8


# -- the refresh task body ------------------------------------------------------------------------


@pytest.fixture
def celery_app(refresh_runtime: Runtime) -> Iterator[Celery]:
    """The Celery app over ``runtime`` (memory broker: nothing leaves the process)."""
    application = create_celery(refresh_runtime.settings, refresh_runtime)
    _purge(application)
    yield application
    _purge(application)


def _purge(application: Celery) -> None:
    """Empty the process-wide in-memory queue, so no test sees another test's messages."""
    with application.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


def _row(rt: Runtime, pk: int) -> Connection:
    with rt.session_factory() as session:
        conn = session.get(Connection, pk)
        assert conn is not None
        return conn


def _claim(rt: Runtime, pk: int) -> Job:
    """Claim ``pk`` the way the scan does and return its job."""
    jobs: list[Job] = []
    RefreshScanner(rt, jobs.append).scan()
    (job,) = [j for j in jobs if j.connection_pk == pk]
    return job


def _run(application: Celery, job: Job) -> Any:
    """Run the refresh task body for ``job`` in this thread (retries re-run at once)."""
    task = application.tasks[REFRESH_TASK]
    result = task.apply(args=(job.connection_pk, job.provider, job.trigger, job.seen_version))
    assert result.successful(), result.traceback
    return result.get()


def _events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "token.refresh"]


def test_scheduled_refresh_of_a_due_row_succeeds_and_advances_next_refresh_at(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A claimed due row is refreshed once; its claim is released and its next due time set."""
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    job = _claim(refresh_runtime, pk)
    claimed = _row(refresh_runtime, pk)
    assert claimed.refresh_claimed_until is not None

    with capture_logs() as logs:
        assert _run(celery_app, job) == "success"

    conn = _row(refresh_runtime, pk)
    assert mock_provider.stats()["calls_by_refresh_token"] == {family["refresh_token"]: 1}
    assert conn.version == job.seen_version + 1
    assert conn.refresh_claimed_until is None
    assert conn.expires_at is not None and conn.next_refresh_at is not None
    lead = (conn.expires_at - conn.next_refresh_at).total_seconds()
    assert abs(lead - 1350) < 0.01  # an hour token: max(20 min, 1.5 x 15 min) before expiry
    assert conn.next_refresh_at > dt.datetime.now(dt.UTC)
    (event,) = _events(logs)
    assert (event["trigger"], event["outcome"], event["attempt"]) == ("scheduled", "success", 1)
    assert event["seconds_to_expiry"] > 0


def test_permanent_failure_is_not_retried_and_leaves_the_scan(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """invalid_grant: one provider call, no retry, needs_reauth, and next_refresh_at NULL."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    job = _claim(refresh_runtime, pk)
    mock_provider.inject("invalid_grant")

    with capture_logs() as logs:
        assert _run(celery_app, job) == "failed"

    assert mock_provider.stats()["token_calls"] == 1
    (event,) = _events(logs)
    assert (event["outcome"], event["error_class"], event["attempt"]) == ("failed", "permanent", 1)
    conn = _row(refresh_runtime, pk)
    assert conn.needs_reauth
    assert conn.next_refresh_at is None
    assert conn.refresh_claimed_until is None
    assert RefreshScanner(refresh_runtime, lambda _job: None).scan().due == 0


def test_transient_failure_is_retried_then_succeeds(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A 500 is retried (attempt 2) and the retry succeeds: the provider sees exactly 2 calls."""
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    job = _claim(refresh_runtime, pk)
    mock_provider.inject("500")

    with capture_logs() as logs:
        assert _run(celery_app, job) == "success"

    assert mock_provider.stats()["refresh_calls"] == 2
    assert mock_provider.stats()["calls_by_refresh_token"] == {family["refresh_token"]: 2}
    first, second = _events(logs)
    assert (first["outcome"], first["http_status"], first["attempt"]) == ("failed", 500, 1)
    assert (second["outcome"], second["attempt"]) == ("success", 2)
    conn = _row(refresh_runtime, pk)
    assert conn.version == job.seen_version + 1
    assert conn.next_refresh_at is not None and conn.refresh_claimed_until is None


def test_transient_failure_without_retries_left_returns_to_the_scan(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """After a transient failure with no retry left, the scan tries again after the back-off."""
    clock = FakeClock(dt.datetime.now(dt.UTC))
    rt = make_runtime(make_settings(tmp_path, task_max_retries=0), clock=clock)
    try:
        application = create_celery(rt.settings, rt)
        pk, _ = add_oauth2_connection(rt, mock_provider, expires_in=600)
        job = _claim(rt, pk)
        mock_provider.inject("503")

        assert _run(application, job) == "failed"
        assert mock_provider.stats()["token_calls"] == 1

        clock.advance(rt.settings.scan_retry_after_failure_seconds + 1)
        jobs: list[Job] = []
        RefreshScanner(rt, jobs.append).scan()
        assert [j.connection_pk for j in jobs] == [pk]
    finally:
        rt.close()


def test_scheduled_task_skips_a_row_refreshed_since_the_claim(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A scheduled task whose row was refreshed meanwhile does not call the provider again."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    job = _claim(refresh_runtime, pk)
    service = refresh_runtime.require_refresh_service()
    assert service.refresh(pk, trigger="on_read").outcome == "success"

    assert _run(celery_app, job) == "skipped_fresh"
    assert mock_provider.stats()["refresh_calls"] == 1


def test_keepalive_task_refreshes_a_token_that_is_not_due(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A keep-alive refreshes a token with days left, to keep its refresh token in use."""
    three_days = 3 * 86400
    pk, _ = add_oauth2_connection(
        refresh_runtime,
        mock_provider,
        lifetime_seconds=three_days + 25 * 3600,
        expires_in=three_days,
    )
    job = _claim(refresh_runtime, pk)
    assert job.trigger == "keepalive"

    with capture_logs() as logs:
        assert _run(celery_app, job) == "success"

    assert mock_provider.stats()["refresh_calls"] == 1
    assert [e["trigger"] for e in _events(logs)] == ["keepalive"]


def test_keepalive_task_is_satisfied_by_any_refresh_since_the_claim(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A keep-alive whose row moved past the claimed version is skipped: the token was used."""
    three_days = 3 * 86400
    pk, _ = add_oauth2_connection(
        refresh_runtime,
        mock_provider,
        lifetime_seconds=three_days + 25 * 3600,
        expires_in=three_days,
    )
    job = _claim(refresh_runtime, pk)
    stale = Job(job.connection_pk, job.provider, job.trigger, job.countdown, job.seen_version - 1)

    assert _run(celery_app, stale) == "skipped_fresh"
    assert mock_provider.stats()["refresh_calls"] == 0


# -- the rate-limit gate --------------------------------------------------------------------------


class ScriptedLimiter:
    """A limiter that answers from a script, then grants; records every call."""

    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)
        self.calls: list[tuple[str, float]] = []

    def acquire(self, key: str, rate_per_second: float) -> float:
        """Return the next scripted wait (0 once the script is spent)."""
        self.calls.append((key, rate_per_second))
        return self.waits.pop(0) if self.waits else 0.0


def test_a_short_rate_limit_wait_is_slept_in_the_task(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A wait that fits the attempt's budget is slept, then the refresh runs under the provider's
    key: the slot is taken right before the provider call."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    job = _claim(refresh_runtime, pk)
    limiter = ScriptedLimiter(0.05)
    service = refresh_runtime.require_refresh_service()
    service.rate_limiter = limiter

    assert _run(celery_app, job) == "success"
    assert limiter.calls == [("provider:oauth2", 50.0), ("provider:oauth2", 50.0)]


def test_a_long_rate_limit_wait_defers_the_task_and_extends_the_claim(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A wait beyond the attempt's budget re-enqueues the task for when a slot is free and keeps
    the scan off the row; nothing is recorded as a provider failure."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    job = _claim(refresh_runtime, pk)
    service = refresh_runtime.require_refresh_service()
    service.rate_limiter = ScriptedLimiter(5.0)
    before = dt.datetime.now(dt.UTC)

    assert _run(celery_app, job) == "throttled"
    assert _row(refresh_runtime, pk).last_refresh_failure is None

    assert mock_provider.stats()["token_calls"] == 0
    lease = _row(refresh_runtime, pk).refresh_claimed_until
    assert lease is not None
    expected = before + dt.timedelta(seconds=5.0 + refresh_runtime.settings.claim_ttl_seconds)
    assert -1 < (lease - expected).total_seconds() < 3  # plus up to 1 s of jitter
    with celery_app.connection_for_write() as conn:
        message = conn.default_channel.basic_get(QUEUE)
        assert message is not None  # the deferred task, published on the app's own broker
        assert message.headers["task"] == REFRESH_TASK
        assert message.headers["eta"] is not None


def test_rate_limit_slot_is_taken_next_to_the_provider_call(tmp_path: Path) -> None:
    """Under a 1/s limit, two refreshes reach the provider at least a second apart.

    Connection A takes its slot, then waits for its lock (held by someone else); B takes the next
    slot a second later and calls the provider; then A's lock is freed and A calls too.
    """
    rt = make_runtime(
        make_settings(tmp_path, provider_rate_limit_per_second=1.0, lock_ttl_seconds=20)
    )
    try:
        with RecordingMockProvider(MockProviderConfig()) as mock:
            application = create_celery(rt.settings, rt)
            first, _ = add_oauth2_connection(rt, mock, expires_in=600)
            second, _ = add_oauth2_connection(rt, mock, expires_in=600)
            service = rt.require_refresh_service()
            held = service.locks.acquire(f"refresh:{first}", 10, 0)
            assert held is not None
            jobs: list[Job] = []
            RefreshScanner(rt, jobs.append).scan()
            by_pk = {j.connection_pk: j for j in jobs}
            runner = threading.Thread(target=_run, args=(application, by_pk[first]))
            runner.start()
            time.sleep(0.3)  # A holds the first slot and waits on its lock
            _run(application, by_pk[second])  # waits ~0.7 s for the next slot, then calls
            held.release()
            runner.join(15)
            calls = sorted(t for t, _ in mock.arrivals)
            assert len(calls) == 2
            assert calls[1] - calls[0] >= 0.9, calls[1] - calls[0]
    finally:
        rt.close()


# -- the embedded worker --------------------------------------------------------------------------

# Runs start_embedded() (worker + beat threads on the memory broker) in a fresh interpreter, as
# `freshtoken dev` does: one Celery app per process. Celery's default app is replaced first by one
# on a dead port, so anything published through it fails fast instead of reaching an AMQP broker
# that may listen on localhost. Prints one RESULT line of JSON.
_DEV_SCRIPT = """
import datetime as dt, json, sys, time
from pathlib import Path
import celery, celery._state
celery._state.set_default_app(
    celery.Celery("stray-default", broker="redis://127.0.0.1:1/0", set_as_current=False)
)
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.worker.embedded import start_embedded
from tests.support import add_oauth2_connection, make_runtime, make_settings

args = json.loads(sys.argv[1])
rt = make_runtime(make_settings(Path(args["tmp"]), scan_interval_seconds=0.5))
with MockProvider(MockProviderConfig(token_lifetime_seconds=3600)) as provider:
    pk, family = add_oauth2_connection(rt, provider, expires_in=600)
    fresh, _ = add_oauth2_connection(rt, provider, expires_in=3600)
    if args["inject"]:
        provider.inject(args["inject"])
    start_embedded(rt)
    deadline = time.monotonic() + args["wait"]
    while time.monotonic() < deadline and provider.stats()["successes"] < 1:
        time.sleep(0.1)
    time.sleep(0.5)
    rows = {}
    with rt.store() as store:
        for key, row_pk in (("due", pk), ("fresh", fresh)):
            conn = store.get_connection_by_pk(row_pk)
            rows[key] = {
                "version": conn.version,
                "expires_at": conn.expires_at.isoformat(),
                "next_refresh_at": conn.next_refresh_at and conn.next_refresh_at.isoformat(),
                "refresh_claimed_until": conn.refresh_claimed_until
                and conn.refresh_claimed_until.isoformat(),
            }
    stats = provider.stats()
    print("RESULT " + json.dumps({
        "rows": rows,
        "successes": stats["successes"],
        "token_calls": stats["token_calls"],
        "calls_by_refresh_token": stats["calls_by_refresh_token"],
        "refresh_token": family["refresh_token"],
        "now": dt.datetime.now(dt.UTC).isoformat(),
    }), flush=True)
"""


def _run_dev(tmp_path: Path, *, inject: str | None, wait: float) -> dict[str, Any]:
    """Run the embedded worker and beat in a fresh process; return what it saw."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _DEV_SCRIPT,
            json.dumps({"tmp": str(tmp_path), "inject": inject, "wait": wait}),
        ],
        cwd=Path(__file__).resolve().parents[3],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=wait + 60,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def test_embedded_worker_and_beat_refresh_a_due_row(tmp_path: Path) -> None:
    """freshtoken dev's worker and beat threads refresh a due row and advance next_refresh_at."""
    result = _run_dev(tmp_path, inject=None, wait=20)

    due, fresh = result["rows"]["due"], result["rows"]["fresh"]
    assert result["calls_by_refresh_token"] == {result["refresh_token"]: 1}
    assert due["version"] == 2
    expires_at = dt.datetime.fromisoformat(due["expires_at"])
    next_refresh_at = dt.datetime.fromisoformat(due["next_refresh_at"])
    # An hour token is next due 1350 s before its new expiry (max(20 min, 1.5 x 15 min)).
    lead = (expires_at - next_refresh_at).total_seconds()
    assert abs(lead - 1350) < 0.01, lead
    assert next_refresh_at > dt.datetime.fromisoformat(result["now"])
    assert due["refresh_claimed_until"] is None
    assert fresh["version"] == 1  # not due: never claimed, never refreshed
    assert fresh["refresh_claimed_until"] is None


def test_embedded_worker_retries_a_transient_failure(tmp_path: Path) -> None:
    """A 500 seen by freshtoken dev's worker is retried on the embedded broker and succeeds."""
    result = _run_dev(tmp_path, inject="500", wait=5)  # the first retry waits at most 2 s

    assert result["token_calls"] >= 2
    assert result["successes"] == 1


def test_a_duplicate_task_of_a_refreshed_row_leaves_its_schedule_as_planned(
    refresh_runtime: Runtime, mock_provider: MockProvider, celery_app: Celery
) -> None:
    """A second task for a row another task already refreshed finds it fresh and does not lease
    it again (no task every lease period for a row that is not due)."""
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    job = _claim(refresh_runtime, pk)
    assert _run(celery_app, job) == "success"
    planned = _row(refresh_runtime, pk).next_refresh_at
    assert _run(celery_app, job) == "skipped_fresh"
    conn = _row(refresh_runtime, pk)
    assert conn.refresh_claimed_until is None
    assert conn.next_refresh_at == planned
    assert mock_provider.stats()["calls_by_refresh_token"] == {family["refresh_token"]: 1}
