"""A global per-provider rate limit shared by every worker (GCRA), so a mass expiry cannot hammer
one provider. Redis-backed in production; an in-process equivalent in embedded mode.

GCRA ("generic cell rate algorithm") keeps one timestamp per key: the theoretical arrival time of
the next allowed call. A call is allowed when that time has come, and pushes it one interval on.
Using Redis' own clock (``TIME`` inside the script) keeps workers on different hosts consistent.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat > now then return tat - now end
redis.call('SET', KEYS[1], tat + interval, 'PX', interval + 1000)
return 0
"""


class RateLimiter(Protocol):
    """Grants calls at a bounded rate per key."""

    def acquire(self, key: str, rate_per_second: float) -> float:
        """Take a slot now and return 0, or return the seconds to wait before asking again."""
        ...


class RedisRateLimiter:
    """GCRA in one Lua script: atomic across every worker process and host."""

    def __init__(self, client: redis.Redis, prefix: str = "freshtoken:rate:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_GCRA)

    def acquire(self, key: str, rate_per_second: float) -> float:
        """Take a slot for ``key`` or say how long to wait."""
        if rate_per_second <= 0:
            return 0.0
        interval_ms = max(1, round(1000 / rate_per_second))
        wait_ms = int(self._script(keys=[self._prefix + key], args=[interval_ms]))
        return wait_ms / 1000


class LocalRateLimiter:
    """The same algorithm for one process (embedded mode and unit tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

    def acquire(self, key: str, rate_per_second: float) -> float:
        """Take a slot for ``key`` or say how long to wait."""
        if rate_per_second <= 0:
            return 0.0
        interval = 1 / rate_per_second
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(key, now), now)
            if tat > now:
                return tat - now
            self._tat[key] = tat + interval
            return 0.0
