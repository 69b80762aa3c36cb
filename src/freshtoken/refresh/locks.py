"""Single flight: one refresh of a connection in flight in the whole deployment.

Two layers:
- :class:`SingleFlight` collapses concurrent callers *in one process* onto one in-flight call, so
  200 readers in one API process do not queue 200 times on the distributed lock.
- A :class:`LockProvider` serialises processes: :class:`RedisLocks` uses redis-py's ``Lock`` (a
  random owner token and a compare-and-delete release, so an expired holder can never delete its
  successor's lock); :class:`LocalLocks` is the embedded mode's in-process equivalent.

The lock TTL is longer than the HTTP timeouts (settings validate it), and the database write is a
compare-and-set on ``version``, so even a holder that stalls past its TTL cannot overwrite the
token its successor stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from redis.exceptions import LockError, LockNotOwnedError, RedisError

if TYPE_CHECKING:
    import redis

T = TypeVar("T")


class Lease(Protocol):
    """A held lock."""

    def release(self) -> bool:
        """Release it; False when it had already expired (another holder may own the key now)."""
        ...


class LockProvider(Protocol):
    """Acquires named locks with a TTL, waiting up to a bound."""

    def acquire(self, name: str, ttl: float, wait: float) -> Lease | None:
        """Block up to ``wait`` seconds; None on timeout."""
        ...


class LockUnavailableError(Exception):
    """The lock service itself failed (e.g. Redis down): nobody may refresh without a lock."""


class _RedisLease:
    def __init__(self, lock: redis.lock.Lock) -> None:
        self._lock = lock

    def release(self) -> bool:
        try:
            self._lock.release()
        except LockNotOwnedError:
            return False
        except (LockError, RedisError):
            return False
        return True


class RedisLocks:
    """Distributed locks in Redis (redis-py ``Lock``: owner token, compare-and-delete release)."""

    def __init__(self, client: redis.Redis, prefix: str = "freshtoken:lock:") -> None:
        self._client = client
        self._prefix = prefix

    def acquire(self, name: str, ttl: float, wait: float) -> Lease | None:
        """Acquire ``prefix + name``, polling every 50 ms for up to ``wait`` seconds."""
        lock = self._client.lock(
            self._prefix + name, timeout=ttl, sleep=0.05, blocking=True, blocking_timeout=wait
        )
        try:
            acquired = lock.acquire()
        except RedisError as exc:
            raise LockUnavailableError(type(exc).__name__) from None
        return _RedisLease(lock) if acquired else None


class _LocalLease:
    def __init__(self, owner: LocalLocks, name: str, token: object) -> None:
        self._owner = owner
        self._name = name
        self._token = token

    def release(self) -> bool:
        return self._owner._release(self._name, self._token)


class LocalLocks:
    """In-process locks with the same TTL semantics as Redis (for the embedded mode and tests)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, tuple[object, float]] = {}
        self._monotonic = monotonic

    def acquire(self, name: str, ttl: float, wait: float) -> Lease | None:
        """Acquire ``name`` or give up after ``wait`` seconds."""
        deadline = time.monotonic() + wait
        token = object()
        with self._cond:
            while True:
                held = self._held.get(name)
                if held is None or held[1] <= self._monotonic():
                    self._held[name] = (token, self._monotonic() + ttl)
                    return _LocalLease(self, name, token)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Wake at least every 50 ms to notice TTL expiry of a stalled holder.
                self._cond.wait(min(remaining, 0.05))

    def _release(self, name: str, token: object) -> bool:
        with self._cond:
            held = self._held.get(name)
            if held is None or held[0] is not token:
                return False
            del self._held[name]
            self._cond.notify_all()
            return True


class _Call(Generic[T]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Collapse concurrent calls with the same key onto the first one; all get its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[object, _Call[T]] = {}

    def do(self, key: object, fn: Callable[[], T]) -> tuple[T, bool]:
        """Run ``fn`` unless a call for ``key`` is in flight; returns (result, shared)."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = _Call()
                self._calls[key] = call
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result, True  # type: ignore[return-value]
        try:
            call.result = fn()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.result, False
