"""The proactive scan on SQLite with a frozen clock: what is due, claims, leases, jitter, paging."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from tests.support import add_fake_connections, add_oauth2_connection, make_runtime, make_settings

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh import policy
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection
from freshtoken.worker.scan import Job, RefreshScanner, ScanReport

CLAIM_TTL = 15  # the default lease: a task's wait in the queue


@pytest.fixture
def make_rt(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Runtime]]:
    """Build a migrated SQLite runtime on the frozen clock (settings overridable)."""
    made: list[Runtime] = []

    def factory(**overrides: Any) -> Runtime:
        rt = make_runtime(make_settings(tmp_path, **overrides), clock=clock)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def scan_runtime(make_rt: Callable[..., Runtime]) -> Runtime:
    """A runtime with default scan settings."""
    return make_rt()


def add(
    rt: Runtime,
    *,
    expires_in: float | None,
    lifetime: float = 3600,
    provider: str = "oauth2",
    credentials: dict[str, Any] | None = None,
    connection_id: str | None = None,
) -> int:
    """Import one connection with fake tokens (the scan never calls the provider)."""
    return add_fake_connections(
        rt,
        1,
        expires_in=expires_in,
        lifetime=lifetime,
        provider=provider,
        credentials=credentials,
        prefix=connection_id,
    )[0]


def row(rt: Runtime, pk: int) -> Connection:
    """The stored row (deleted rows included)."""
    with rt.session_factory() as session:
        conn = session.get(Connection, pk)
        assert conn is not None
        return conn


def scan(rt: Runtime, *, seed: int = 7, **kwargs: Any) -> tuple[ScanReport, list[Job]]:
    """Run one scan, collecting the jobs it enqueues."""
    jobs: list[Job] = []
    report = RefreshScanner(rt, jobs.append, rng=random.Random(seed), **kwargs).scan()
    return report, jobs


# -- what is due ----------------------------------------------------------------------------------


def test_only_due_rows_are_claimed(scan_runtime: Runtime) -> None:
    """Only rows whose next_refresh_at has come are claimed; their lease is countdown + TTL."""
    due = add(
        scan_runtime, expires_in=600
    )  # an hour token with 10 min left: inside its 1350 s lead
    later = add(scan_runtime, expires_in=3000)  # due in 1650 s
    fresh = add(scan_runtime, expires_in=3600)
    before = {pk: row(scan_runtime, pk).next_refresh_at for pk in (later, fresh)}

    report, jobs = scan(scan_runtime)

    assert [j.connection_pk for j in jobs] == [due]
    assert (report.due, report.claimed, report.enqueued, report.skipped) == (1, 1, 1, 0)
    (job,) = jobs
    assert job.trigger == "scheduled"
    assert job.provider == "oauth2"
    assert job.seen_version == row(scan_runtime, due).version
    claimed = row(scan_runtime, due)
    lease = scan_runtime.clock.now() + dt.timedelta(seconds=job.countdown + CLAIM_TTL)
    assert claimed.next_refresh_at == lease
    assert claimed.refresh_claimed_until == lease
    assert {pk: row(scan_runtime, pk).next_refresh_at for pk in (later, fresh)} == before
    assert row(scan_runtime, later).refresh_claimed_until is None


def test_an_immediate_second_scan_claims_nothing(scan_runtime: Runtime) -> None:
    """A scan right after another enqueues nothing: a claimed row is never enqueued twice."""
    add_fake_connections(scan_runtime, 5, expires_in=600)

    _, first_jobs = scan(scan_runtime)
    second, second_jobs = scan(scan_runtime)

    assert len(first_jobs) == 5
    assert second_jobs == []
    assert (second.due, second.claimed, second.enqueued) == (0, 0, 0)
    assert second.oldest_overdue_seconds is None


def test_an_expired_lease_is_claimed_again(scan_runtime: Runtime, clock: FakeClock) -> None:
    """A row whose task never ran is claimed again once countdown + claim TTL have passed."""
    pk = add(scan_runtime, expires_in=600)
    _, (job,) = scan(scan_runtime)
    lease_seconds = job.countdown + CLAIM_TTL

    clock.advance(lease_seconds - 1)
    assert scan(scan_runtime)[1] == []

    clock.advance(1)
    _, jobs = scan(scan_runtime)
    assert [j.connection_pk for j in jobs] == [pk]
    assert row(scan_runtime, pk).refresh_claimed_until is not None


def test_rows_that_cannot_be_refreshed_are_never_scanned(
    scan_runtime: Runtime, clock: FakeClock
) -> None:
    """needs_reauth, exhausted, deleted, API_KEY and token-less rows are never claimed."""
    with MockProvider(MockProviderConfig()) as provider:
        reauth, _ = add_oauth2_connection(scan_runtime, provider, expires_in=600)
        provider.inject("invalid_grant")
        service = scan_runtime.require_refresh_service()
        assert service.refresh(reauth, trigger="scheduled").outcome == "failed"
    exhausted = add(scan_runtime, expires_in=600, connection_id="exhausted")
    with scan_runtime.store() as store:
        conn = store.get_connection_by_pk(exhausted)
        assert conn is not None
        conn.refresh_exhausted = True
        conn.next_refresh_at = scan_runtime.plan_next_refresh(conn)
    deleted = add(scan_runtime, expires_in=600, connection_id="deleted")
    with scan_runtime.store() as store:
        conn = store.get_connection_by_pk(deleted)
        assert conn is not None
        store.soft_delete(conn)
    api_key = add(
        scan_runtime,
        expires_in=None,
        credentials={"type": "API_KEY", "apiKey": "k-123456789"},
        connection_id="apikey",
    )
    no_refresh_token = add(
        scan_runtime,
        expires_in=600,
        credentials={"type": "OAUTH2", "access_token": "at-only"},
        connection_id="no-rt",
    )
    assert row(scan_runtime, reauth).needs_reauth

    clock.advance(30 * 86400)  # far past every expiry and every keep-alive
    report, jobs = scan(scan_runtime)

    assert jobs == []
    assert report.due == 0
    for pk in (reauth, exhausted, deleted, api_key, no_refresh_token):
        assert row(scan_runtime, pk).next_refresh_at is None, pk


def test_a_refresh_token_without_expiry_is_due_at_once(scan_runtime: Runtime) -> None:
    """A refresh token with no known expiry is refreshed at the first scan, without countdown."""
    pk = add(scan_runtime, expires_in=None)

    _, jobs = scan(scan_runtime)

    assert [(j.connection_pk, j.trigger, j.countdown) for j in jobs] == [(pk, "scheduled", 0.0)]


def test_an_idle_refresh_token_is_kept_alive(scan_runtime: Runtime) -> None:
    """A token good for 3 more days whose last refresh was 25 h ago is due as a keep-alive."""
    three_days = 3 * 86400
    idle = add(scan_runtime, expires_in=three_days, lifetime=three_days + 25 * 3600)
    recent = add(scan_runtime, expires_in=three_days, lifetime=three_days + 23 * 3600)

    _, jobs = scan(scan_runtime)

    (job,) = jobs
    assert job.connection_pk == idle
    assert job.trigger == "keepalive"
    assert 0 <= job.countdown <= 300  # not urgent: spread over a few minutes
    assert row(scan_runtime, recent).refresh_claimed_until is None


def test_exact_online_is_due_only_in_its_last_30_seconds(
    scan_runtime: Runtime, clock: FakeClock
) -> None:
    """exact-online (refresh_lead_seconds 30) is not due 60 s before expiry but is 20 s before."""
    pk = add(scan_runtime, expires_in=60, lifetime=600, provider="exact-online")
    expires_at = row(scan_runtime, pk).expires_at
    assert expires_at is not None
    assert row(scan_runtime, pk).next_refresh_at == expires_at - dt.timedelta(seconds=30)

    assert scan(scan_runtime)[1] == []

    clock.advance(40)
    _, jobs = scan(scan_runtime)
    assert [(j.connection_pk, j.provider, j.trigger) for j in jobs] == [
        (pk, "exact-online", "scheduled")
    ]
    assert jobs[0].countdown == 0.0  # already inside the accepted window: no jitter


def test_a_burst_of_simultaneous_expiries_is_spread_before_the_read_margin(
    scan_runtime: Runtime,
) -> None:
    """1,000 tokens expiring at one instant get countdowns spread over the whole safe window.

    Every countdown lands before the read margin starts (so no read has to refresh) and they are
    spread evenly, not bunched at 0.
    """
    pks = add_fake_connections(
        scan_runtime, 1000, expires_in=1000
    )  # hour tokens: lead 1350 s, read margin 900 s
    conn = row(scan_runtime, pks[0])
    margin = policy.read_margin(conn, scan_runtime.catalog.get("oauth2"), scan_runtime.settings)
    assert margin == 900
    window = (1000 - margin - 5) * 0.8  # what is left before the margin, minus safety, 80 %

    report, jobs = scan(scan_runtime)

    assert report.claimed == 1000
    countdowns = sorted(j.countdown for j in jobs)
    assert {j.trigger for j in jobs} == {"scheduled"}
    assert countdowns[0] >= 0
    assert countdowns[-1] < 1000 - margin  # every refresh lands before reads would refresh
    assert countdowns[-1] <= window
    assert len(set(countdowns)) > 900
    quarters = [
        sum(1 for c in countdowns if q * window / 4 <= c < (q + 1) * window / 4) for q in range(4)
    ]
    assert min(quarters) >= 150, quarters
    assert countdowns[-1] > 0.95 * window


# -- the event ------------------------------------------------------------------------------------


def test_each_scan_logs_one_refresh_scan_event(scan_runtime: Runtime, clock: FakeClock) -> None:
    """refresh.scan reports due, claimed, enqueued, skipped, oldest overdue and duration."""
    pks = add_fake_connections(scan_runtime, 3, expires_in=1250)  # due 100 s ago (lead 1350 s)
    failing = pks[1]

    def enqueue(job: Job) -> None:
        if job.connection_pk == failing:
            raise ConnectionError("broker down")
        enqueued.append(job)

    enqueued: list[Job] = []
    with capture_logs() as logs:
        report = RefreshScanner(scan_runtime, enqueue, rng=random.Random(1)).scan()

    (event,) = [e for e in logs if e["event"] == "refresh.scan"]
    assert event["due"] == 3
    assert event["claimed"] == 3
    assert event["enqueued"] == 2
    assert event["skipped"] == 1
    assert event["oldest_overdue_seconds"] == 100.0
    assert isinstance(event["duration_ms"], float) and event["duration_ms"] >= 0
    assert event["log_level"] == "info"
    assert report.enqueued == 2 and report.skipped == 1
    assert [e["connection_pk"] for e in logs if e["event"] == "refresh.scan.enqueue_failed"] == [
        failing
    ]
    # The row whose publish failed stays claimed and comes back once its lease is over.
    lease = row(scan_runtime, failing).refresh_claimed_until
    assert lease is not None
    clock.set(lease)
    expired = {
        pk
        for pk in pks
        if (until := row(scan_runtime, pk).refresh_claimed_until) and until <= lease
    }
    assert failing in expired
    assert {j.connection_pk for j in scan(scan_runtime)[1]} == expired


def test_an_empty_scan_still_logs_its_event(scan_runtime: Runtime) -> None:
    """A scan with nothing due logs refresh.scan with zero counts and no overdue figure."""
    with capture_logs() as logs:
        scan(scan_runtime)

    (event,) = [e for e in logs if e["event"] == "refresh.scan"]
    assert (event["due"], event["claimed"], event["enqueued"], event["skipped"]) == (0, 0, 0, 0)
    assert event["oldest_overdue_seconds"] is None


# -- paging ---------------------------------------------------------------------------------------


def test_one_scan_pages_through_more_rows_than_a_batch(make_rt: Callable[..., Runtime]) -> None:
    """With a batch of 7, one scan claims all 50 due rows page by page."""
    rt = make_rt(scan_batch_size=7)
    pks = add_fake_connections(rt, 50, expires_in=600)

    report, jobs = scan(rt)

    assert sorted(j.connection_pk for j in jobs) == sorted(pks)
    assert report.claimed == 50
    assert report.pages == 8
    assert scan(rt)[1] == []


def test_the_page_budget_leaves_the_rest_to_the_next_scan(make_rt: Callable[..., Runtime]) -> None:
    """A scan stops after max_pages; the next scan picks up the remaining rows."""
    rt = make_rt(scan_batch_size=7)
    pks = add_fake_connections(rt, 50, expires_in=600)

    first, first_jobs = scan(rt, max_pages=3)
    _, second_jobs = scan(rt, max_pages=20)

    assert len(first_jobs) == 21 and first.pages == 3
    assert sorted(j.connection_pk for j in first_jobs + second_jobs) == sorted(pks)


def test_a_long_queue_is_planned_at_the_providers_rate_limit(
    make_rt: Callable[..., Runtime],
) -> None:
    """Rows claimed in one pass reach the workers no faster than the provider's rate limit: the
    k-th row of a provider starts no sooner than k / rate seconds, and its claim covers that."""
    rt = make_rt(provider_rate_limit_per_second=2.0)
    pks = [add(rt, expires_in=None) for _ in range(6)]  # due now, no jitter
    _, jobs = scan(rt)
    assert sorted(j.connection_pk for j in jobs) == sorted(pks)
    assert [j.countdown for j in jobs] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    now = rt.clock.now()
    for job in jobs:
        lease = row(rt, job.connection_pk).refresh_claimed_until
        assert lease == now + dt.timedelta(seconds=job.countdown + CLAIM_TTL)
