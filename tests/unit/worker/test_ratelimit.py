"""The per-provider rate limit (GCRA): in-process and Redis-backed, hammered from many threads.

fakeredis cannot run the Lua script (no ``lupa`` installed), so the Redis limiter is tested
against the real Redis, marked ``integration``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from tests.support import REDIS_URL, require_service

from freshtoken.refresh.ratelimit import LocalRateLimiter, RedisRateLimiter

Acquire = Callable[[], float]


def hammer(
    make_acquire: Callable[[], Acquire], *, threads: int, window: float, now: Callable[[], float]
) -> tuple[int, float]:
    """Let ``threads`` callers take slots as fast as allowed for ``window`` seconds.

    Returns the grants that happened inside ``[start, start + window]`` and ``start``. A grant is
    timed after ``acquire`` returned, so a grant counted here really happened inside the window.
    """
    barrier = threading.Barrier(threads + 1)
    grants: list[float] = []
    lock = threading.Lock()
    start = 0.0

    def run() -> None:
        acquire = make_acquire()
        barrier.wait()
        while now() < start + window:
            wait = acquire()
            if wait == 0:
                with lock:
                    grants.append(now())
            else:
                assert wait > 0
                time.sleep(min(wait, 0.005))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    start = now()
    barrier.wait()
    for w in workers:
        w.join(window + 10)
    return sum(1 for g in grants if g <= start + window), start


def test_local_limiter_never_exceeds_rate_times_window_plus_one() -> None:
    """Eight threads hammering one key get at most rate x window + 1 slots in the window."""
    limiter = LocalRateLimiter()
    rate, window = 50.0, 1.2

    granted, _ = hammer(
        lambda: lambda: limiter.acquire("provider:x", rate),
        threads=8,
        window=window,
        now=time.monotonic,
    )

    assert granted <= rate * window + 1
    assert granted >= rate * window * 0.5  # it limits, it does not starve


def test_local_limiter_says_how_long_to_wait() -> None:
    """A refused call is told to wait at most one interval; after that wait it is granted."""
    limiter = LocalRateLimiter()
    assert limiter.acquire("k", 10.0) == 0
    wait = limiter.acquire("k", 10.0)
    assert 0 < wait <= 0.1
    time.sleep(wait)
    assert limiter.acquire("k", 10.0) == 0


def test_local_limiter_keys_are_independent_and_zero_rate_is_unlimited() -> None:
    """Each provider key has its own budget; a rate of 0 means no limit."""
    limiter = LocalRateLimiter()
    assert limiter.acquire("provider:a", 1.0) == 0
    assert limiter.acquire("provider:b", 1.0) == 0
    assert limiter.acquire("provider:a", 1.0) > 0
    assert all(limiter.acquire("provider:c", 0) == 0 for _ in range(100))


@pytest.fixture
def redis_url() -> str:
    """The test Redis (skip, or fail under FRESHTOKEN_REQUIRE_SERVICES=1, when unreachable)."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        require_service("Redis", reachable=False)
    return REDIS_URL


@pytest.mark.integration
def test_redis_limiter_holds_across_independent_clients(redis_url: str) -> None:
    """Eight threads, each with its own Redis client (as separate workers), share one budget.

    Redis' own clock decides (TIME in the Lua script), so the grants in the window never exceed
    rate x window + 1 whoever asks.
    """
    prefix = f"freshtoken:test-rate:{uuid.uuid4().hex}:"
    rate, window = 50.0, 1.2
    clients: list[redis.Redis] = []

    def make_acquire() -> Acquire:
        client = redis.Redis.from_url(redis_url)
        clients.append(client)
        limiter = RedisRateLimiter(client, prefix=prefix)
        return lambda: limiter.acquire("provider:x", rate)

    try:
        granted, _ = hammer(make_acquire, threads=8, window=window, now=time.time)
        assert granted <= rate * window + 1
        assert granted >= rate * window * 0.5
    finally:
        for client in clients:
            for key in client.scan_iter(prefix + "*"):
                client.delete(key)
            client.close()


@pytest.mark.integration
def test_redis_limiter_says_how_long_to_wait(redis_url: str) -> None:
    """A refused call is told to wait at most one interval (Redis millisecond precision)."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"freshtoken:test-rate:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(client, prefix=prefix)
    try:
        assert limiter.acquire("k", 10.0) == 0
        wait = limiter.acquire("k", 10.0)
        assert 0 < wait <= 0.1
        assert 0 < client.pttl(prefix + "k") <= 1100  # the key expires on its own
        assert all(limiter.acquire("other", 0) == 0 for _ in range(10))
    finally:
        client.delete(prefix + "k")
        client.close()
