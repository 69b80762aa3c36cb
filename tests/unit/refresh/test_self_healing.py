"""After a transient fault ends, connections heal in seconds (issue #16, rows 1 and 6).

Reads are not refused by the cooldown while the provider is healthy, failed rows come back to the
scan after a backoff of seconds bounded by their expiry, claims are short, and refresh tasks that
meet a database outage are retried.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.refresh import policy
from freshtoken.refresh.locks import LocalLocks
from freshtoken.refresh.seam import RefreshDenied, Refusal
from freshtoken.refresh.service import RefreshService
from freshtoken.runtime import Runtime
from freshtoken.settings import Settings
from freshtoken.store.models import Connection
from freshtoken.store.repository import ConnectionStore
from freshtoken.worker.celery_app import REFRESH_TASK, create_celery
from freshtoken.worker.scan import Job, RefreshScanner

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _service(rt: Runtime) -> RefreshService:
    service = rt.require_refresh_service()
    return service


def _read(rt: Runtime, pk: int) -> tuple[Connection, dict[str, Any]]:
    with rt.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        return conn, store.credentials(conn)


# -- the read cooldown ----------------------------------------------------------------------------


def test_read_past_a_transient_failure_refreshes_once_when_the_provider_is_back(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """An expired token whose refresh hit a 503 is refreshed by the next read past the 2 s retry
    backoff, inside the 30 s cooldown, once the provider answers again (it used to be 424 for
    the whole window)."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    mock_provider.inject("503")
    conn, creds = _read(refresh_runtime, pk)
    with pytest.raises(RefreshDenied) as first:
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert first.value.reason is Refusal.FAILED
    conn, creds = _read(refresh_runtime, pk)
    assert policy.in_cooldown(conn, refresh_runtime.clock.now(), refresh_runtime.settings)
    time.sleep(2.1)  # past the 2 s retry backoff (real clock): the next read retries
    served_conn, served = _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert mock_provider.is_access_token_valid(served["access_token"])
    assert mock_provider.stats()["token_calls"] == 2
    assert served_conn.last_refresh_failure is None


def test_permanent_failure_still_answers_424_at_once(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """After invalid_grant, a read in the cooldown is refused as needs_reauth (424) without
    calling the provider."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    mock_provider.inject("invalid_grant")
    conn, creds = _read(refresh_runtime, pk)
    with pytest.raises(RefreshDenied):
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    conn, creds = _read(refresh_runtime, pk)
    with pytest.raises(RefreshDenied) as second:
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert second.value.reason is Refusal.NEEDS_REAUTH
    assert mock_provider.stats()["token_calls"] == 1


def test_readers_waiting_on_the_lock_share_a_transient_failure(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """Two processes read an expired connection while the provider fails: one provider call,
    both readers get its answer (single flight across processes, no hammering during an
    outage)."""
    settings = make_settings(tmp_path)
    rt_a, rt_b = make_runtime(settings), make_runtime(settings)
    locks = LocalLocks()
    _service(rt_a).locks = locks
    _service(rt_b).locks = locks
    try:
        mock_provider.configure(latency_seconds=0.3)
        pk, _ = add_oauth2_connection(rt_a, mock_provider, expires_in=-1)
        mock_provider.inject("500", count=2)
        conn, creds = _read(rt_a, pk)
        reasons: list[Refusal] = []
        barrier = threading.Barrier(2)

        def reader(rt: Runtime) -> None:
            barrier.wait()
            try:
                _service(rt).refresh_for_read(conn, creds, force=False)
            except RefreshDenied as denied:
                reasons.append(denied.reason)

        with capture_logs() as logs:
            threads = [threading.Thread(target=reader, args=(rt,)) for rt in (rt_a, rt_b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert mock_provider.stats()["token_calls"] == 1
        assert reasons == [Refusal.FAILED, Refusal.FAILED]
        codes = sorted(e["error_code"] for e in logs if e["event"] == "token.refresh")
        assert codes == ["failed_meanwhile", "server_error"]
    finally:
        rt_a.close()
        rt_b.close()


# -- back on the schedule in seconds --------------------------------------------------------------


def test_retry_after_failure_backs_off_in_seconds_bounded_by_expiry(tmp_path: Path) -> None:
    """2, 4, 8 ... s by attempt, capped at scan_retry_after_failure_seconds, and never later than
    2 s before a still-valid token expires (1 s at the earliest)."""
    settings = make_settings(tmp_path)
    far = Connection(expires_at=NOW + dt.timedelta(hours=1))
    waits = [
        (policy.retry_after_failure(far, NOW, settings, n) - NOW).total_seconds()
        for n in (1, 2, 3, 4, 5, 6, 20)
    ]
    cap = settings.scan_retry_after_failure_seconds
    assert waits == [2, 4, 8, 16, min(32, cap), cap, cap]
    assert cap <= 30
    soon = Connection(expires_at=NOW + dt.timedelta(seconds=6))
    assert (policy.retry_after_failure(soon, NOW, settings, 4) - NOW).total_seconds() == 4
    closer = Connection(expires_at=NOW + dt.timedelta(seconds=2.5))
    assert (policy.retry_after_failure(closer, NOW, settings, 1) - NOW).total_seconds() == 1
    expired = Connection(expires_at=NOW - dt.timedelta(seconds=60))
    assert (policy.retry_after_failure(expired, NOW, settings, 2) - NOW).total_seconds() == 4


def test_settings_claims_last_seconds_not_minutes() -> None:
    """The scan's default claim is seconds (not one task's worst case of about a minute), so a
    lost task's row is back at the next scan."""
    settings = Settings.model_construct()  # the defaults, without keys
    assert settings.claim_ttl_seconds <= 20


def test_row_whose_retries_were_spent_in_an_outage_is_back_within_seconds(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """A scheduled task that fails with no retry left puts its row back on the schedule 2 s
    later (not minutes): the next scan after the outage refreshes it before it expires."""
    clock = FakeClock(dt.datetime.now(dt.UTC))
    rt = make_runtime(make_settings(tmp_path, task_max_retries=0), clock=clock)
    try:
        application = create_celery(rt.settings, rt)
        pk, _ = add_oauth2_connection(rt, mock_provider, lifetime_seconds=90, expires_in=20)
        jobs: list[Job] = []
        RefreshScanner(rt, jobs.append).scan()
        (job,) = jobs
        mock_provider.inject("500")
        task = application.tasks[REFRESH_TASK]
        result = task.apply(args=(job.connection_pk, job.provider, job.trigger, job.seen_version))
        assert result.get() == "failed"
        row, _ = _read(rt, pk)
        assert row.next_refresh_at is not None
        assert (row.next_refresh_at - clock.now()).total_seconds() <= 2.0
        clock.advance(2.5)
        again: list[Job] = []
        RefreshScanner(rt, again.append).scan()
        assert [j.connection_pk for j in again] == [pk]
        ok = task.apply(args=(pk, job.provider, again[0].trigger, again[0].seen_version))
        assert ok.get() == "success"
    finally:
        rt.close()


def test_refresh_task_that_meets_a_database_outage_is_retried(
    refresh_runtime: Runtime, mock_provider: MockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first two runs of the task find the database down; the task retries (instead of
    raising and dropping the row until its claim expires) and the third run refreshes."""
    application = create_celery(refresh_runtime.settings, refresh_runtime)
    _, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=60)
    jobs: list[Job] = []
    RefreshScanner(refresh_runtime, jobs.append).scan()
    (job,) = jobs
    original = ConnectionStore.get_connection_by_pk
    failures = {"left": 2}

    def flaky(self: ConnectionStore, conn_pk: int) -> Connection | None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("SELECT", {}, Exception("the database system is starting up"))
        return original(self, conn_pk)

    monkeypatch.setattr(ConnectionStore, "get_connection_by_pk", flaky)
    task = application.tasks[REFRESH_TASK]
    with capture_logs() as logs:
        result = task.apply(args=(job.connection_pk, job.provider, job.trigger, job.seen_version))
    assert result.successful(), result.traceback
    assert result.get() == "success"
    assert failures["left"] == 0
    retries = [e for e in logs if e["event"] == "refresh.task.retry"]
    assert [e["reason"] for e in retries] == ["store_unavailable", "store_unavailable"]
    assert mock_provider.stats()["refresh_calls"] == 1
