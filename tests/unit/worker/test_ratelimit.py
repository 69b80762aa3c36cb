"""The in-process per-provider rate limit (GCRA), hammered from many threads.

The Redis-backed limiter runs a Lua script fakeredis cannot (no ``lupa`` installed): it is
tested against the real Redis in tests/integration/test_ratelimit_redis.py.
"""

from __future__ import annotations

import time

from tests.ratelimit_helpers import hammer

from freshtoken.refresh.ratelimit import LocalRateLimiter


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
