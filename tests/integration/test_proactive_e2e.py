"""Proactive refresh end to end: real ``freshtoken worker`` and ``freshtoken beat`` processes.

Every test runs against the real PostgreSQL (its own schema) and Redis (its own database
number, flushed), with the workers and beats started as separate processes configured only
through ``FRESHTOKEN_*`` variables, and a real HTTP mock provider (rotation and reuse detection
on). Evidence comes from three independent places: the provider's counters, the database, and the
workers' JSON ``token.refresh`` / ``refresh.scan`` log lines.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select
from structlog.testing import capture_logs

from freshtoken.api.app import create_app
from freshtoken.mockprovider import MockProviderConfig
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection
from tests.e2e_helpers import (
    CommandRecorder,
    Fleet,
    Proc,
    RecordingMockProvider,
    RedisLease,
    bulk_import,
    drop_schema,
    freshtoken_env,
    http_json,
    http_seed,
    lease_redis_db,
    local_seed,
    lock_keys,
    max_in_window,
    parse_timestamp,
    wait_until,
)
from tests.support import (
    ENCRYPTION_KEY,
    REDIS_URL,
    SECRET_KEY,
    make_runtime,
    make_settings,
    pg_schema_url,
    require_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

SCAN_INTERVAL = 2.0


@dataclass
class Stack:
    """One test's PostgreSQL schema, Redis database, process fleet and in-test runtime."""

    database_url: str
    redis_url: str
    redis: Any
    lease: RedisLease
    runtime: Runtime
    fleet: Fleet
    tmp: Path

    def rows(self) -> list[Connection]:
        """Every connection row, by id."""
        with self.runtime.session_factory() as session:
            return list(session.scalars(select(Connection).order_by(Connection.id)))

    def refreshed_count(self) -> int:
        """Rows refreshed at least once since import (import sets version 1)."""
        return sum(1 for r in self.rows() if r.version >= 2)


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Build a :class:`Stack` on a fresh schema and Redis database; tear all of it down after."""
    made: list[Stack] = []

    def factory(**settings: object) -> Stack:
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.RedisError:
            require_service("Redis", reachable=False)
        lease = lease_redis_db(REDIS_URL)
        client, url_redis = lease.client, lease.url
        database_url = pg_schema_url()
        runtime = make_runtime(
            make_settings(
                tmp_path,
                database_url=database_url,
                redis_url=url_redis,
                db_pool_size=4,
                scan_interval_seconds=SCAN_INTERVAL,
            )
        )
        env = freshtoken_env(
            database_url=database_url,
            redis_url=url_redis,
            data_dir=tmp_path / "data",
            secret_key=SECRET_KEY,
            encryption_key=ENCRYPTION_KEY,
            scan_interval_seconds=SCAN_INTERVAL,
            db_pool_size=4,
            **settings,
        )
        stack = Stack(
            database_url, url_redis, client, lease, runtime, Fleet(tmp_path / "logs", env), tmp_path
        )
        made.append(stack)
        return stack

    try:
        yield factory
    finally:
        for stack in made:
            stack.fleet.stop_all()
            stack.runtime.close()
            drop_schema(stack.database_url)
            stack.lease.release()


def refresh_events(*procs: Proc) -> list[dict[str, Any]]:
    """Every ``token.refresh`` line of these processes."""
    return [e for p in procs for e in p.events("token.refresh")]


def scan_events(*procs: Proc) -> list[dict[str, Any]]:
    """Every ``refresh.scan`` line of these processes."""
    return [e for p in procs for e in p.events("refresh.scan")]


def pending_at_each_scan(scans: list[dict[str, Any]], refreshes: list[dict[str, Any]]) -> list[int]:
    """For each scan, how many rows earlier scans had enqueued that no worker had started yet."""
    starts = sorted(
        parse_timestamp(e["timestamp"]).timestamp() - e["duration_ms"] / 1000 for e in refreshes
    )
    pending: list[int] = []
    enqueued = 0
    for scan in sorted(scans, key=lambda e: str(e["timestamp"])):
        at = parse_timestamp(scan["timestamp"]).timestamp()
        pending.append(enqueued - bisect.bisect_left(starts, at))
        enqueued += int(scan["enqueued"])
    return pending


def outcomes(events: list[dict[str, Any]]) -> Counter[str]:
    """How many attempts ended in each outcome."""
    return Counter(str(e["outcome"]) for e in events)


# -- 1. every token refreshed ahead of time, no read needed ---------------------------------------


@pytest.mark.timeout(240)
def test_tokens_are_refreshed_before_expiry_without_any_read(make_stack: StackFactory) -> None:
    """500 two-to-three-minute tokens are all refreshed before expiry by worker and beat alone.

    No read happens until every row is refreshed; then a read of each through the HTTP API gets a
    valid token from the store without a single synchronous refresh.
    """
    stack = make_stack()
    rng = random.Random(500)
    with RecordingMockProvider(MockProviderConfig(token_lifetime_seconds=3600)) as provider:
        worker = stack.fleet.worker("worker", concurrency=4, pool="prefork")
        beat = stack.fleet.beat("beat")

        def token() -> tuple[float, float]:
            lifetime = rng.uniform(120, 180)
            return lifetime, rng.uniform(30, min(lifetime, 150))

        imported = bulk_import(
            stack.runtime,
            seed=local_seed(provider),
            token_url=provider.token_url,
            tokens=[token() for _ in range(500)],
        )
        by_pk = {i.pk: i for i in imported}
        deadline = max(i.expires_at for i in imported)
        wait_until(
            lambda: stack.refreshed_count() == 500,
            (deadline - dt.datetime.now(dt.UTC)).total_seconds(),
            "all 500 connections refreshed before the last expiry",
            interval=1.0,
            procs=[worker, beat],
            details=lambda: f"refreshed {stack.refreshed_count()}/500",
        )

        # The provider: one call per token family, every presented refresh token the live one.
        stats = provider.stats()
        assert stats["refresh_calls"] == 500
        assert stats["invalid_grant"] == 0
        assert set(stats["calls_by_refresh_token"].values()) == {1}
        assert set(stats["calls_by_refresh_token"]) == {i.refresh_token for i in imported}

        # The database: moved forward, bookkeeping set, claims released, nobody has read yet.
        for row in stack.rows():
            before = by_pk[row.id]
            assert row.expires_at is not None and row.expires_at > before.expires_at
            assert row.last_refresh_success is not None
            assert row.last_refresh_success < before.expires_at
            assert row.refresh_claimed_until is None
            assert (
                row.next_refresh_at is not None and row.next_refresh_at > row.last_refresh_success
            )
            assert row.last_fetched_at is None
            assert not row.needs_reauth

        # The worker's log: one scheduled success per connection, each before the old expiry.
        events = refresh_events(worker)
        assert outcomes(events) == {"success": 500}, outcomes(events)
        assert {e["trigger"] for e in events} == {"scheduled"}
        assert sorted(e["connection_pk"] for e in events) == sorted(by_pk)
        assert min(e["seconds_to_expiry"] for e in events) > 0
        assert sum(e["enqueued"] for e in scan_events(worker)) == 500
        log.info(
            "e2e.ahead_of_time min_seconds_to_expiry=%s median=%s",
            min(e["seconds_to_expiry"] for e in events),
            sorted(e["seconds_to_expiry"] for e in events)[250],
        )

        # Reads: every token served as stored, still valid, no synchronous refresh at all.
        calls_before = provider.stats()["refresh_calls"]
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        with capture_logs() as read_logs, TestClient(create_app(stack.runtime)) as client:
            for item in imported:
                response = client.get(
                    f"/connections/{item.connection_id}",
                    params={"provider_config_key": "mock"},
                    headers=headers,
                )
                assert response.status_code == 200, response.text
                access_token = response.json()["credentials"]["access_token"]
                assert access_token != item.access_token
                assert provider.is_access_token_valid(access_token)
        assert provider.stats()["refresh_calls"] == calls_before
        assert [e for e in read_logs if e["event"] == "token.refresh"] == []
        stack.runtime.fetch_stamps.flush()  # read stamps are written behind the reads
        assert all(row.last_fetched_at is not None for row in stack.rows())


# -- 2. two beats and a slow queue: no double refresh ---------------------------------------------


@pytest.mark.timeout(200)
def test_two_beats_and_a_slow_queue_never_refresh_twice(make_stack: StackFactory) -> None:
    """Two beats scanning over a backed-up queue for a minute never refresh a token twice.

    Every refresh token is presented to the provider exactly once (no reuse, no invalid_grant),
    and no duplicate task even reaches a worker: the scan's claims enqueue each due row once.
    """
    stack = make_stack()
    mock, mock_url = stack.fleet.mock_provider(
        "mock-provider", "--lifetime", "60", "--latency", "0.5"
    )
    rng = random.Random(2)
    worker = stack.fleet.worker("worker", concurrency=4, pool="prefork")
    imported = bulk_import(
        stack.runtime,
        seed=http_seed(mock_url),
        token_url=mock_url + "/oauth/token",
        tokens=[(60.0, rng.uniform(15, 60)) for _ in range(120)],
    )
    beats = [stack.fleet.beat("beat-a"), stack.fleet.beat("beat-b")]
    run_until = time.monotonic() + 60
    while time.monotonic() < run_until:
        stack.fleet.check_alive()
        time.sleep(1.0)
    for beat in beats:
        beat.stop()

    def drained() -> bool:
        enqueued = sum(e["enqueued"] for e in scan_events(worker))
        return (
            len(refresh_events(worker)) == enqueued
            and http_json(mock_url + "/_mock/stats")["in_flight"] == 0
        )

    wait_until(drained, 60, "the queue to drain", interval=1.0, procs=[worker])
    stats = http_json(mock_url + "/_mock/stats")
    events = refresh_events(worker)
    scans = scan_events(worker)

    assert stats["invalid_grant"] == 0
    assert stats["reuse_detected"] == 0
    assert set(stats["calls_by_refresh_token"].values()) == {1}, Counter(
        stats["calls_by_refresh_token"].values()
    )
    assert outcomes(events) == {"success": stats["refresh_calls"]}, outcomes(events)
    assert sum(e["enqueued"] for e in scans) == len(events)
    per_connection = Counter(e["connection_pk"] for e in events)
    assert set(per_connection) == {i.pk for i in imported}
    assert sum(per_connection.values()) > len(imported)  # tokens kept being refreshed
    for beat in beats:
        sent = [e for e in beat.logs() if str(e.get("event", "")).startswith("Scheduler: Sending")]
        assert len(sent) >= 20, beat.name
    # The condition under test really happened: most scans ran while rows they could have
    # enqueued again were claimed and still waiting for a worker.
    pending = pending_at_each_scan(scans, events)
    assert len(scans) >= 30
    assert sum(1 for p in pending if p > 0) >= len(scans) // 2, pending
    log.info(
        "e2e.two_beats scans=%d scans_with_pending=%d max_pending=%d refreshes=%d "
        "per_connection=%s max_concurrent=%s",
        len(scans),
        sum(1 for p in pending if p > 0),
        max(pending),
        len(events),
        Counter(per_connection.values()),
        stats["max_concurrent"],
    )
    mock.stop()


# -- 3. a worker killed mid-refresh -------------------------------------------------------------


CLAIM_TTL = 20
LOCK_TTL = 10


@pytest.mark.timeout(200)
def test_worker_killed_mid_refresh_loses_nothing(make_stack: StackFactory) -> None:
    """SIGKILL of a worker during provider calls: leases and locks expire, a new worker finishes.

    The provider keeps a 120 s grace window for a spent refresh token (as Auth0 and Okta do): the
    killed refreshes did rotate at the provider but their answers died with the worker, so the
    new worker's retry re-presents the stored token. Without a grace window a rotating provider
    would revoke those families: no client can recover a response it never received.
    """
    stack = make_stack(
        claim_ttl_seconds=CLAIM_TTL,
        lock_ttl_seconds=LOCK_TTL,
        lock_wait_seconds=8,
        http_connect_timeout=2,
        http_read_timeout=6,
    )
    config = MockProviderConfig(token_lifetime_seconds=3600, latency_seconds=3.0, grace_seconds=120)
    with RecordingMockProvider(config) as provider:
        first = stack.fleet.worker("worker-1", concurrency=4, pool="prefork")
        imported = bulk_import(
            stack.runtime,
            seed=local_seed(provider),
            token_url=provider.token_url,
            tokens=[(300.0, 60.0)] * 24,  # inside the read margin: due at once, no countdown
        )
        beat = stack.fleet.beat("beat")
        wait_until(
            lambda: provider.stats()["in_flight"] >= 4,
            30,
            "four refreshes in flight",
            interval=0.05,
            procs=[first, beat],
        )
        in_flight = provider.stats()["in_flight"]
        held = lock_keys(stack.redis)
        ttls = [stack.redis.pttl(k) for k in held]
        first.kill()
        killed_at = time.monotonic()
        assert len(held) == in_flight, (held, in_flight)
        assert all(0 < t <= LOCK_TTL * 1000 for t in ttls), ttls

        second = stack.fleet.worker("worker-2", concurrency=4, pool="prefork")
        locks_checked = False
        worst_stale_lease = 0.0

        def recovered() -> bool:
            nonlocal locks_checked, worst_stale_lease
            now = dt.datetime.now(dt.UTC)
            rows = stack.rows()
            for row in rows:
                if row.refresh_claimed_until is not None:
                    # A lease is either live or expired for less than a scan cycle: nothing stays
                    # claimed by the dead worker beyond its TTL.
                    stale = (now - row.refresh_claimed_until).total_seconds()
                    worst_stale_lease = max(worst_stale_lease, stale)
                    assert stale < SCAN_INTERVAL * 3, (row.id, stale)
                    assert row.refresh_claimed_until <= now + dt.timedelta(
                        seconds=CLAIM_TTL + 10
                    ), row.id
            if not locks_checked and time.monotonic() - killed_at > LOCK_TTL + 0.5:
                current = lock_keys(stack.redis)
                # Every lock the dead worker held expired by its TTL (a new holder has a new token).
                assert all(current.get(k) != v for k, v in held.items()), (held, current)
                locks_checked = True
            return locks_checked and all(
                r.version >= 2 and r.refresh_claimed_until is None for r in rows
            )

        wait_until(
            recovered,
            CLAIM_TTL + LOCK_TTL + 60,
            "every connection refreshed after the kill",
            interval=0.5,
            procs=[second, beat],
            details=lambda: (
                f"refreshed {stack.refreshed_count()}/24, in flight {provider.stats()['in_flight']}"
            ),
        )
        beat.stop()
        second.stop()

        stats = provider.stats()
        assert stats["invalid_grant"] == 0
        assert stats["families_revoked"] == 0
        # Exactly the refreshes whose answers died with the worker were re-presented in grace.
        assert 1 <= stats["grace_accepted"] <= in_flight, (stats, in_flight)
        assert lock_keys(stack.redis) == {}
        with stack.runtime.store() as store:
            for item in imported:
                conn = store.get_connection_by_pk(item.pk)
                assert conn is not None and conn.version >= 2
                credentials = store.credentials(conn)
                assert provider.is_access_token_valid(credentials["access_token"])
                live = provider.current_refresh_token(item.refresh_token)
                assert credentials["refresh_token"] == live
        log.info(
            "e2e.kill in_flight=%d grace_accepted=%d worst_stale_lease=%.1fs",
            in_flight,
            stats["grace_accepted"],
            worst_stale_lease,
        )


# -- 4. mass expiry under a provider rate limit ---------------------------------------------------


MASS = 2000
RATE = 25


@pytest.mark.timeout(300)
def test_mass_expiry_holds_the_provider_rate_limit(make_stack: StackFactory) -> None:
    """2,000 tokens expiring at one instant: two workers share one 25/s provider limit.

    The shared limiter grants at most 25 refreshes in any second across both worker processes,
    the provider sees at most 25/s sustained, and every token is still refreshed before that
    instant (2,000 / 25 = 80 s of calls, within the ~150 s the tokens have left when they all
    come due together).
    """
    stack = make_stack(provider_rate_limit_per_second=RATE)
    grants = CommandRecorder(stack.redis_url, "SET freshtoken:rate:provider:oauth2 ")
    with (
        RecordingMockProvider(MockProviderConfig(token_lifetime_seconds=3600)) as provider,
        grants,
    ):
        workers = [
            stack.fleet.worker("worker-1", concurrency=4, pool="prefork"),
            stack.fleet.worker("worker-2", concurrency=4, pool="prefork"),
        ]
        beat = stack.fleet.beat("beat")
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=160)
        started = time.monotonic()
        imported = bulk_import(
            stack.runtime,
            seed=local_seed(provider),
            token_url=provider.token_url,
            tokens=[(300.0, expiry)] * MASS,
        )
        log.info("e2e.mass import took %.1fs", time.monotonic() - started)
        wait_until(
            lambda: stack.refreshed_count() == MASS,
            (expiry - dt.datetime.now(dt.UTC)).total_seconds(),
            f"all {MASS} connections refreshed before their common expiry",
            interval=1.0,
            procs=[*workers, beat],
            details=lambda: f"refreshed {stack.refreshed_count()}/{MASS}",
        )
        refreshed_at = dt.datetime.now(dt.UTC)
        assert refreshed_at < expiry

        stats = provider.stats()
        assert stats["refresh_calls"] == MASS
        assert stats["invalid_grant"] == 0
        assert set(stats["calls_by_refresh_token"].values()) == {1}

    # The limit, where the limiter grants it: the shared GCRA's grants, timed by Redis itself (the
    # SET its Lua script runs per granted slot), across both workers: at most 25 in any second
    # (26 when a window's both ends land on a grant).
    assert len(grants.times) == MASS
    granted_peak = max_in_window(grants.times, 1.0)
    # The same from the workers' logs: each attempt starts right after its slot was granted
    # (start = timestamp - duration); scheduling delays blur it slightly.
    events = refresh_events(*workers)
    started_at = {
        e["connection_pk"]: parse_timestamp(e["timestamp"]).timestamp() - e["duration_ms"] / 1000
        for e in events
        if e["outcome"] == "success"
    }
    # Where the provider sees it: arrivals at the token endpoint. The sustained rate holds; the
    # 1 s peak is reported with the grant-to-call delay that explains any excess (the slot is
    # taken before the lock and two database reads: see test_tasks'
    # test_rate_limit_slot_is_taken_next_to_the_provider_call, an xfail).
    arrivals = [t for t, _ in provider.arrivals]
    span = max(arrivals) - min(arrivals)
    pk_of = {i.refresh_token: i.pk for i in imported}
    delays = sorted(t - started_at[pk_of[rt]] for t, rt in provider.arrivals if rt in pk_of)
    log.info(
        "e2e.mass granted_peak_per_s=%d log_peak_per_s=%d provider_peak_per_s=%d "
        "provider_peak_per_10s=%d span=%.1fs avg_rate=%.2f/s grant_to_call_p50=%.3fs "
        "p99=%.3fs max=%.3fs per_worker=%s",
        granted_peak,
        max_in_window(started_at.values(), 1.0),
        max_in_window(arrivals, 1.0),
        max_in_window(arrivals, 10.0),
        span,
        (MASS - 1) / span,
        delays[len(delays) // 2],
        delays[int(len(delays) * 0.99)],
        delays[-1],
        [len(refresh_events(w)) for w in workers],
    )
    assert granted_peak <= RATE + 1, granted_peak
    assert (MASS - 1) / span <= RATE * 1.01
    # Every connection refreshed once. A connection whose task waited in a worker's queue past
    # its claim (seconds, so a lost task's row comes back fast) can be enqueued once more by
    # the next scan; that second task finds the row fresh and stops before the provider
    # (skipped_fresh: no rate slot, no provider call, the refresh token was sent once above).
    counted = outcomes(events)
    assert counted["success"] == MASS
    assert set(counted) <= {"success", "skipped_fresh"}, counted
    assert min(e["seconds_to_expiry"] for e in events if e["outcome"] == "success") > 0
    # Both workers shared the load, so the limit held across processes, not inside one.
    assert all(len(refresh_events(w)) > MASS // 10 for w in workers)
    for row in stack.rows():
        assert row.last_refresh_success is not None and row.last_refresh_success < expiry
    assert {i.pk for i in imported} == {r.id for r in stack.rows()}
