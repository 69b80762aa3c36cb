"""The Redis-backed per-provider rate limit (GCRA) against the real Redis, from many clients.

fakeredis cannot run the limiter's Lua script (no ``lupa`` installed), hence the real Redis.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from freshtoken.refresh.ratelimit import RedisRateLimiter
from tests.ratelimit_helpers import Acquire, hammer
from tests.support import REDIS_URL, require_service

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url() -> str:
    """The test Redis (skip, or fail under FRESHTOKEN_REQUIRE_SERVICES=1, when unreachable)."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        require_service("Redis", reachable=False)
    return REDIS_URL


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
