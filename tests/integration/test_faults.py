"""Fault injection: Redis and PostgreSQL going away under load, and a provider outage.

Every test runs real ``freshtoken api`` (and, where the test needs them, ``freshtoken worker`` and
``freshtoken beat``) processes against a *private* PostgreSQL cluster and a *private* Redis server
(see ``tests/fault_helpers.py``) that the test stops, restarts or freezes; the shared services on
5432/6379 are never touched. The token endpoint is the in-process :class:`MockProvider` with
refresh-token rotation and reuse detection, so a refresh token presented twice is answered with
``invalid_grant`` and revokes the whole token family: a lost token shows up as a stranded
connection, not as a silent success.

Evidence comes from the API's answers (status and error envelope), the database rows, the
provider's counters and the processes' JSON log lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection
from tests.e2e_helpers import (
    Fleet,
    Proc,
    freshtoken_env,
    lock_keys,
    parse_timestamp,
    wait_until,
)
from tests.fault_helpers import (
    LoadGenerator,
    PostgresCluster,
    RedisServer,
    Sample,
    envelope_code,
    free_port,
    private_postgres,
    private_redis,
)
from tests.support import (
    ENCRYPTION_KEY,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
KEY = "mock"  # the integration add_oauth2_connection creates
LOCK_TTL = 10.0

# Settings of every freshtoken process started here (FRESHTOKEN_<NAME>); tests add their own.
BASE_SETTINGS: dict[str, object] = {
    "http_connect_timeout": 2.0,
    "http_read_timeout": 5.0,
    "lock_ttl_seconds": LOCK_TTL,
    "lock_wait_seconds": 8.0,
    "db_pool_size": 5,
    "scan_interval_seconds": 1.0,
}


@dataclasses.dataclass
class FaultStack:
    """One test's private servers, provider, in-test runtime and process fleet."""

    pg: PostgresCluster
    redis: RedisServer
    database_url: str
    runtime: Runtime
    provider: MockProvider
    fleet: Fleet

    def start_api(self, name: str = "api") -> tuple[Proc, str]:
        """Start ``freshtoken api`` on a free port; return it and its base URL once healthy."""
        port = free_port()
        proc = self.fleet.start(name, ["api", "--host", "127.0.0.1", "--port", str(port)])
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(base + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, f"{name} healthy", procs=[proc])
        return proc, base

    def add(self, connection_id: str, *, expires_in: float, lifetime: float = 3600) -> int:
        """Import an OAUTH2 connection whose token (issued ``lifetime`` s before) expires then."""
        pk, _ = add_oauth2_connection(
            self.runtime,
            self.provider,
            connection_id=connection_id,
            lifetime_seconds=lifetime,
            expires_in=expires_in,
        )
        return pk

    def unschedule(self, pk: int) -> None:
        """Take a row off the proactive scan, so that only a read can refresh it."""
        with self.runtime.session_factory.begin() as session:
            session.execute(
                update(Connection).where(Connection.id == pk).values(next_refresh_at=None)
            )

    def row(self, pk: int) -> Connection:
        """The row as stored now."""
        with self.runtime.session_factory() as session:
            conn = session.get(Connection, pk)
            assert conn is not None
            return conn

    def rows(self, pks: list[int]) -> list[Connection]:
        """Several rows as stored now."""
        with self.runtime.session_factory() as session:
            return list(session.scalars(select(Connection).where(Connection.id.in_(pks))))

    def access_token(self, pk: int) -> str:
        """The stored access token of a row (decrypted)."""
        with self.runtime.store() as store:
            conn = store.get_connection_by_pk(pk)
            assert conn is not None
            return str(store.credentials(conn)["access_token"])


StackFactory = Callable[..., FaultStack]


@pytest.fixture(autouse=True)
def _quiet_http_client_logs() -> Iterator[None]:
    """Keep httpx's one-line-per-request INFO logs of the load out of the captured logs."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Build a :class:`FaultStack` (private PostgreSQL + Redis); tear every part down after."""
    with contextlib.ExitStack() as cleanup:

        def factory(provider: MockProviderConfig | None = None, **settings: object) -> FaultStack:
            redis = cleanup.enter_context(private_redis())
            pg = cleanup.enter_context(private_postgres())
            database_url = pg.create_database()
            # The in-test runtime imports and inspects rows; it never uses Redis.
            runtime = make_runtime(make_settings(tmp_path, database_url=database_url))
            cleanup.callback(runtime.close)
            mock = MockProvider(
                provider or MockProviderConfig(rotate_refresh_tokens=True, reuse_detection=True)
            ).start()
            cleanup.callback(mock.stop)
            env = freshtoken_env(
                database_url=database_url,
                redis_url=redis.url,
                data_dir=tmp_path / "data",
                secret_key=SECRET_KEY,
                encryption_key=ENCRYPTION_KEY,
                **{**BASE_SETTINGS, **settings},
            )
            fleet = Fleet(tmp_path / "logs", env)
            cleanup.callback(fleet.stop_all)  # runs first: processes stop before the servers
            return FaultStack(pg, redis, database_url, runtime, mock, fleet)

        yield factory


def get_connection(client: httpx.Client, connection_id: str) -> httpx.Response:
    """``GET /connections/{id}`` of the test integration."""
    return client.get(f"/connections/{connection_id}", params={"provider_config_key": KEY})


def api_errors(proc: Proc) -> list[dict[str, Any]]:
    """The ``api.error`` lines (unexpected exceptions answered with a 500)."""
    return proc.events("api.error")


def statuses(samples: list[Sample]) -> Counter[tuple[int, str | None]]:
    """How many samples ended with each (status, error code)."""
    return Counter((s.status, s.code or s.error) for s in samples)


def sleep_until(instant: float) -> None:
    """Sleep until the monotonic clock reaches ``instant``."""
    time.sleep(max(0.0, instant - time.monotonic()))


# -- 1. Redis stopped under load, then started again ---------------------------------------------


@pytest.mark.timeout(180)
def test_redis_outage_serves_fresh_reads_and_refreshes_resume_after(
    make_stack: StackFactory,
) -> None:
    """Redis down for 8 s under 20 readers: fresh reads stay 200, nothing refreshes lock-free."""
    stack = make_stack()
    fresh = [f"fresh-{i}" for i in range(8)]
    for connection_id in fresh:
        stack.add(connection_id, expires_in=3600)
    api, base = stack.start_api()
    worker = stack.fleet.worker("worker", concurrency=2)
    beat = stack.fleet.beat("beat")
    client = httpx.Client(base_url=base, headers=AUTH, timeout=30)
    paths = [f"/connections/{c}?provider_config_key={KEY}" for c in fresh]

    with LoadGenerator(base, AUTH, paths, threads=20) as load:
        time.sleep(3)
        stack.redis.stop()
        down_at = time.monotonic()
        # Imported while Redis is down: an expired token that only a read may refresh, and one
        # that is due (ten minutes left) but still works, for the scan to refresh later.
        expired_pk = stack.add("expired", expires_in=-30)
        stack.unschedule(expired_pk)
        due_pk = stack.add("due", expires_in=600)
        due_token = stack.access_token(due_pk)
        calls_before = stack.provider.stats()["refresh_calls"]
        during_expired = get_connection(client, "expired")
        during_due = get_connection(client, "due")
        during_manual = client.post(
            "/connections/expired/refresh", params={"provider_config_key": KEY}
        )
        calls_during = stack.provider.stats()["refresh_calls"] - calls_before
        sleep_until(down_at + 8)
        up_at, up_wall = time.monotonic(), time.time()
        stack.redis.start()
        # Reads right after Redis is back: the API's Redis client must reconnect by itself.
        after_expired = get_connection(client, "expired")
        time.sleep(6)

    samples = load.samples
    assert len(samples) >= 200, statuses(samples)
    assert statuses(samples) == {(200, None): len(samples)}, statuses(samples)
    outage = load.between(down_at, up_at)
    assert len(outage) >= 50, f"only {len(outage)} reads fell inside the outage"

    # An expired token while Redis is down: no refresh without the lock, and an envelope, no 500.
    assert calls_during == 0
    # 503 naming the lock service, not a 400 blaming the provider it never called.
    assert during_expired.status_code == 503, during_expired.text
    assert envelope_code(during_expired) == "lock_unavailable"
    assert during_manual.status_code == 400, during_manual.text
    assert during_manual.json()["error"]["payload"]["error_code"] == "lock_unavailable"
    # A due token that still works is served as it is.
    assert during_due.status_code == 200, during_due.text
    served_stored = during_due.json()["credentials"]["access_token"] == due_token
    assert served_stored, "the due connection was not served its stored token"
    # The lock outage is not the connection's fault: no failure is counted against it.
    row = stack.row(expired_pk)
    assert (row.refresh_attempts or 0, row.last_refresh_failure) == (0, None)
    assert not row.needs_reauth

    # After Redis is back: the read refreshed the expired token...
    assert after_expired.status_code == 200, after_expired.text
    token = after_expired.json()["credentials"]["access_token"]
    assert stack.provider.is_access_token_valid(token)
    assert stack.row(expired_pk).version == 2
    # ...and the worker refreshed the due one, without any read and without manual action.
    wait_until(
        lambda: stack.row(due_pk).version >= 2,
        60,
        "the worker to refresh the due connection",
        procs=[worker, beat],
        details=lambda: worker.tail(),
    )
    scheduled = [
        e
        for e in worker.events("token.refresh")
        if e.get("connection_pk") == due_pk and e.get("outcome") == "success"
    ]
    assert [e["trigger"] for e in scheduled] == ["scheduled"]
    log.info(
        "redis outage: the worker refreshed the due row %.1fs after Redis was back",
        parse_timestamp(scheduled[0]["timestamp"]).timestamp() - up_wall,
    )
    assert stack.provider.is_access_token_valid(stack.access_token(due_pk))

    # No lock is left held once the TTL has passed.
    redis = stack.redis.client()
    wait_until(lambda: not lock_keys(redis), LOCK_TTL + 5, "no freshtoken:lock:* key")
    assert redis.keys("freshtoken:lock:*") == []
    redis.close()
    client.close()
    stats = stack.provider.stats()
    assert (stats["invalid_grant"], stats["reuse_detected"]) == (0, 0)
    stack.fleet.check_alive([api, worker, beat])
    assert api_errors(api) == []


@pytest.mark.timeout(120)
def test_frozen_redis_does_not_hang_reads_that_need_a_refresh(make_stack: StackFactory) -> None:
    """Redis frozen (SIGSTOP) for 12 s: a read needing a refresh gets an answer within 8 s."""
    stack = make_stack()
    fresh = [f"fresh-{i}" for i in range(4)]
    for connection_id in fresh:
        stack.add(connection_id, expires_in=3600)
    stack.add("expired", expires_in=-30)
    api, base = stack.start_api()
    paths = [f"/connections/{c}?provider_config_key={KEY}" for c in fresh]
    answer: list[tuple[float, int]] = []

    def read_expired() -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
            started = time.monotonic()
            status = get_connection(client, "expired").status_code
            answer.append((time.monotonic() - started, status))

    with LoadGenerator(base, AUTH, paths, threads=5) as load:
        time.sleep(1)
        stack.redis.freeze()
        frozen_at = time.monotonic()
        reader = threading.Thread(target=read_expired, daemon=True)
        reader.start()
        try:
            sleep_until(frozen_at + 12)
        finally:
            stack.redis.thaw()
        thawed_at = time.monotonic()
        reader.join(30)
        time.sleep(1)

    log.info("frozen redis: expired read answered after %s", answer)
    # Reads of fresh tokens never need Redis.
    during = load.between(frozen_at, thawed_at)
    assert during and statuses(during) == {(200, None): len(during)}, statuses(during)
    assert answer, "the read of the expired connection never finished"
    ((seconds, status),) = answer
    assert status != 500
    assert seconds < 8, f"the read hung {seconds:.1f}s on the frozen Redis"
    stack.fleet.check_alive([api])


# -- 2. PostgreSQL restarted under load -----------------------------------------------------------


@pytest.mark.timeout(150)
def test_postgres_restart_answers_503_envelope_and_recovers_by_itself(
    make_stack: StackFactory,
) -> None:
    """PostgreSQL stopped for 5 s under 10 readers: 503 ``database_unavailable``, never 500."""
    stack = make_stack()
    fresh = [f"fresh-{i}" for i in range(8)]
    for connection_id in fresh:
        stack.add(connection_id, expires_in=3600)
    api, base = stack.start_api()
    client = httpx.Client(base_url=base, headers=AUTH, timeout=30)
    paths = [f"/connections/{c}?provider_config_key={KEY}" for c in fresh]

    with LoadGenerator(base, AUTH, paths, threads=10) as load:
        time.sleep(3)
        stop_began = time.monotonic()
        stack.pg.stop()
        down_at = time.monotonic()
        time.sleep(1)
        health_down = client.get("/health")
        read_down = get_connection(client, "fresh-0")
        sleep_until(down_at + 5)
        start_began = time.monotonic()
        stack.pg.start()
        up_at = time.monotonic()
        time.sleep(6)
    health_up = client.get("/health")
    client.close()

    samples = load.samples
    counts = statuses(samples)
    first_ok = min((s.ended for s in load.after(start_began) if s.status == 200), default=None)
    log.info(
        "postgres restart: %s; first 200 %.2fs after pg_ctl start returned",
        dict(counts),
        (first_ok - up_at) if first_ok is not None else float("nan"),
    )
    # Only two answers, ever: the credentials, or the database-unavailable envelope.
    assert set(counts) <= {(200, None), (503, "database_unavailable")}, counts
    assert all(s.status == 200 for s in load.between(0, stop_began)), counts
    outage = load.between(down_at, start_began)
    assert len(outage) >= 20, counts
    assert {s.status for s in outage} == {503}, statuses(outage)
    assert (health_down.status_code, envelope_code(health_down)) == (503, "database_unavailable")
    assert (read_down.status_code, envelope_code(read_down)) == (503, "database_unavailable")
    # Recovery without a restart of the API: stale pooled connections are pinged and replaced.
    recovered = load.after(up_at + 1.0)
    assert len(recovered) >= 20, counts
    assert statuses(recovered) == {(200, None): len(recovered)}, statuses(recovered)
    assert health_up.status_code == 200
    stack.fleet.check_alive([api])
    assert api_errors(api) == []


def _refresh_with_postgres_down(
    stack: FaultStack, client: httpx.Client, connection_id: str, down_for: float
) -> httpx.Response:
    """Read an expired connection; stop PostgreSQL once the provider has rotated the token.

    The provider answers after its latency, so the refresh's database write runs while
    PostgreSQL is down; it comes back ``down_for`` seconds after it went down.
    """
    calls = stack.provider.stats()["refresh_calls"]
    answer: list[httpx.Response] = []
    reader = threading.Thread(
        target=lambda: answer.append(get_connection(client, connection_id)), daemon=True
    )
    reader.start()
    wait_until(
        lambda: stack.provider.stats()["refresh_calls"] == calls + 1,
        10,
        "the provider to receive the refresh",
        interval=0.02,
    )
    stack.pg.stop()
    time.sleep(down_for)
    stack.pg.start()
    reader.join(60)
    assert answer, "the read did not finish"
    return answer[0]


@pytest.mark.timeout(150)
def test_refresh_whose_database_write_fails_does_not_strand_the_connection(
    make_stack: StackFactory,
) -> None:
    """PostgreSQL dies after the provider rotated the token: the new tokens must not be lost."""
    stack = make_stack(
        MockProviderConfig(
            latency_seconds=3.0, rotate_refresh_tokens=True, reuse_detection=True, grace_seconds=0
        )
    )
    outages = {"short": 4.5, "long": LOCK_TTL + 1}  # covers the write; within / beyond the TTL
    pks = {name: stack.add(name, expires_in=-30) for name in outages}
    api, base = stack.start_api()
    client = httpx.Client(base_url=base, headers=AUTH, timeout=60)

    first = {
        name: _refresh_with_postgres_down(stack, client, name, down_for)
        for name, down_for in outages.items()
    }
    for name, response in first.items():
        # Served once the write landed, or 503 while it could not: never a 500.
        assert response.status_code in (200, 503), (name, response.text)
        if response.status_code == 503:
            assert envelope_code(response) == "database_unavailable"
    second = {name: get_connection(client, name) for name in outages}
    log.info(
        "lost-write scenario: first=%s second=%s provider=%s",
        {n: r.status_code for n, r in first.items()},
        {n: r.status_code for n, r in second.items()},
        {k: v for k, v in stack.provider.stats().items() if k != "calls_by_refresh_token"},
    )
    client.close()

    stats = stack.provider.stats()
    for name, response in second.items():
        assert response.status_code == 200, (name, response.text)
        token = response.json()["credentials"]["access_token"]
        assert stack.provider.is_access_token_valid(token), name
        row = stack.row(pks[name])
        assert (row.needs_reauth, row.version) == (False, 2), name
    # Each connection's refresh token was spent exactly once: nothing presented a spent one.
    assert (stats["invalid_grant"], stats["reuse_detected"], stats["refresh_calls"]) == (0, 0, 2)
    stack.fleet.check_alive([api])
    assert api_errors(api) == []


@pytest.mark.timeout(120)
def test_lost_provider_response_is_recoverable_only_within_the_provider_grace_window(
    make_stack: StackFactory,
) -> None:
    """A refresh answer lost to a client timeout: re-auth without a grace window, fine within."""
    stack = make_stack(http_read_timeout=1.5, refresh_failure_cooldown_seconds=1)
    api, base = stack.start_api()
    client = httpx.Client(base_url=base, headers=AUTH, timeout=30)
    outcome: dict[float, tuple[int, int, httpx.Response]] = {}
    for grace in (0.0, 30.0):
        name = f"grace-{int(grace)}"
        pk = stack.add(name, expires_in=-30)
        # The provider rotates the refresh token, then answers after the client gave up.
        stack.provider.configure(latency_seconds=3.0, grace_seconds=grace)
        first = get_connection(client, name)
        stack.provider.configure(latency_seconds=0.0)
        time.sleep(1.5)  # the failure cooldown
        outcome[grace] = (first.status_code, pk, get_connection(client, name))
    client.close()

    stats = stack.provider.stats()
    for grace, (first_status, pk, second) in outcome.items():
        assert first_status == 400, grace  # expired token, transient failure: an envelope
        row = stack.row(pk)
        if grace:
            # Within the grace window the spent refresh token still works once: recovered.
            assert second.status_code == 200, second.text
            valid = stack.provider.is_access_token_valid(
                second.json()["credentials"]["access_token"]
            )
            assert valid
            assert (row.needs_reauth, row.version) == (False, 2)
        else:
            # Without one, the provider sees a replay and revokes the family: the connection
            # needs re-authorisation, and says so (an envelope, never a 500 or a dead token).
            assert second.status_code == 400, second.text
            assert envelope_code(second) == "invalid_credentials"
            assert row.needs_reauth
    assert (stats["grace_accepted"], stats["reuse_detected"]) == (1, 1)
    stack.fleet.check_alive([api])
    assert api_errors(api) == []


# -- 3. the provider failing for a while ----------------------------------------------------------

OUTAGE_SETTINGS: dict[str, object] = {
    "http_connect_timeout": 1.0,
    "http_read_timeout": 3.0,
    "lock_ttl_seconds": 8.0,
    "lock_wait_seconds": 6.0,
    "refresh_failure_cooldown_seconds": 5,
    "scan_retry_after_failure_seconds": 3,
}


@pytest.mark.timeout(240)
def test_provider_outage_never_exhausts_a_connection_and_all_recover(
    make_stack: StackFactory,
) -> None:
    """50 provider failures (500s and timeouts) against worker, beat and readers: none exhausted."""
    stack = make_stack(**OUTAGE_SETTINGS)
    names = [f"due-{i}" for i in range(10)]
    # Due for the scan and for reads (ten minutes left of an hour), but still valid.
    pks = [stack.add(name, expires_in=600) for name in names]
    originals = {pk: stack.access_token(pk) for pk in pks}
    for kind in ("500", "timeout") * 25:
        stack.provider.inject(kind)
    started_on = dt.datetime.now(dt.UTC).date()
    api, base = stack.start_api()
    worker = stack.fleet.worker("worker", concurrency=2)
    beat = stack.fleet.beat("beat")
    paths = [f"/connections/{n}?provider_config_key={KEY}" for n in names]

    max_attempts = 0
    ever_exhausted: set[int] = set()
    ever_reauth: set[int] = set()

    def observe() -> list[Connection]:
        nonlocal max_attempts
        rows = stack.rows(pks)
        for r in rows:
            max_attempts = max(max_attempts, r.refresh_attempts or 0)
            if r.refresh_exhausted:
                ever_exhausted.add(r.id)
            if r.needs_reauth:
                ever_reauth.add(r.id)
        return rows

    def recovered() -> bool:
        return all(
            r.version >= 2 and stack.provider.is_access_token_valid(stack.access_token(r.id))
            for r in observe()
        )

    # Readers during the outage only: afterwards, recovery is the worker's job alone.
    with LoadGenerator(base, AUTH, paths, threads=2, pause=0.5, timeout=30) as load:
        outage_began = time.monotonic()
        wait_until(
            lambda: observe() and stack.provider.stats()["pending_injections"] == 0,
            150,
            "the 50 injected failures to be consumed",
            interval=0.5,
            procs=[api, worker, beat],
        )
        outage_ended = time.monotonic()
    wait_until(recovered, 90, "every connection refreshed", interval=0.5, procs=[worker, beat])
    recovered_after = time.monotonic() - outage_ended
    outage_seconds = outage_ended - outage_began
    successes = Counter(
        str(e["trigger"])
        for p in (api, worker)
        for e in p.events("token.refresh")
        if e.get("outcome") == "success"
    )
    log.info(
        "provider outage: %.1fs, recovered %.1fs later, reads %s, successes by trigger %s",
        outage_seconds,
        recovered_after,
        dict(statuses(load.samples)),
        dict(successes),
    )

    stats = stack.provider.stats()
    assert stats["injected_errors"] == 50
    assert outage_seconds >= 15, f"the outage lasted only {outage_seconds:.1f}s"
    # A day's failures count once: never more than one attempt, never exhausted or re-auth.
    days = (dt.datetime.now(dt.UTC).date() - started_on).days + 1
    assert 1 <= max_attempts <= days
    assert ever_exhausted == set()
    assert ever_reauth == set()
    # Readers were served throughout: every token was still valid, so a failure never showed.
    assert statuses(load.samples) == {(200, None): len(load.samples)}, statuses(load.samples)
    for r in stack.rows(pks):
        assert (r.refresh_attempts or 0, r.refresh_exhausted, r.needs_reauth) == (0, False, False)
        assert r.expires_at is not None
        left = (r.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
        assert left > 3000, left
        rotated = stack.access_token(r.id) != originals[r.id]
        assert rotated, f"row {r.id} still has its original token"
    assert (stats["invalid_grant"], stats["reuse_detected"]) == (0, 0)
    failed = [e for e in worker.events("token.refresh") if e.get("outcome") == "failed"]
    assert failed and {e["error_class"] for e in failed} == {"transient"}
    stack.fleet.check_alive([api, worker, beat])
    assert api_errors(api) == []


@pytest.mark.timeout(120)
def test_worker_alone_recovers_a_connection_after_its_task_retries_ran_out(
    make_stack: StackFactory,
) -> None:
    """After the task's retries are spent on a provider outage, the scan picks the row up again."""
    stack = make_stack(**{**OUTAGE_SETTINGS, "task_max_retries": 1})
    pk = stack.add("due", expires_in=600)
    stack.provider.inject("500", count=2)  # the first attempt and its one retry
    worker = stack.fleet.worker("worker", concurrency=2)
    beat = stack.fleet.beat("beat")
    wait_until(
        lambda: (
            len([e for e in worker.events("token.refresh") if e.get("outcome") == "failed"]) == 2
        ),
        30,
        "the attempt and its retry to fail",
        procs=[worker, beat],
    )
    # The provider is healthy again; no read happens. The scan retries after 3 s.
    wait_until(
        lambda: stack.row(pk).version >= 2,
        20,
        "the worker to refresh the connection after the outage",
        procs=[worker, beat],
    )
