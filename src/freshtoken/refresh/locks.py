"""Single flight: one refresh of a connection in flight in the whole deployment.

Two layers:
- Per process, concurrent callers share one in-flight call (the refresh core's flights, see
  :mod:`freshtoken.refresh.flights`), so 200 readers in one API process do not queue 200 times on
  the distributed lock. :class:`SingleFlight` is the thread-based equivalent, kept for sync code.
- A :class:`LockProvider` serialises processes: :class:`RedisLocks` uses redis-py's ``Lock`` (a
  random owner token and a compare-and-delete release, so an expired holder can never delete its
  successor's lock); :class:`LocalLocks` is the embedded mode's in-process equivalent. Both have
  an async ``acquire_async`` whose wait holds no thread (redis.asyncio; asyncio sleeps).

The lock TTL is longer than the HTTP timeouts (settings validate it), and the database write is a
compare-and-set on ``version``, so even a holder that stalls past its TTL cannot overwrite the
token its successor stored.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import redis.asyncio
import redis.connection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    import redis

T = TypeVar("T")


class Lease(Protocol):
    """A held lock."""

    def release(self) -> bool:
        """Release it; False when it had already expired (another holder may own the key now).

        Raises :class:`LockReleaseUnavailableError` when the lock service cannot be reached.
        """
        ...


class AsyncLease(Protocol):
    """A held lock, released from async code."""

    async def release(self) -> bool:
        """Release it; False when it had already expired (another holder may own the key now).

        Raises :class:`LockReleaseUnavailableError` when the lock service cannot be reached.
        """
        ...


class LockProvider(Protocol):
    """Acquires named locks with a TTL, waiting up to a bound."""

    def acquire(self, name: str, ttl: float, wait: float) -> Lease | None:
        """Block up to ``wait`` seconds; None on timeout."""
        ...

    async def acquire_async(self, name: str, ttl: float, wait: float) -> AsyncLease | None:
        """Wait up to ``wait`` seconds without holding a thread; None on timeout."""
        ...


class LockUnavailableError(Exception):
    """The lock service itself failed (e.g. Redis down): nobody may refresh without a lock."""


class LockReleaseUnavailableError(LockUnavailableError):
    """A held lock could not be released because the lock service is unreachable.

    Distinct from an expired lease (``release`` returning False): the key stays until its TTL,
    which on-call must read as "Redis was down", not as "a holder stalled".
    """


class _RedisLease:
    def __init__(self, lock: redis.lock.Lock) -> None:
        self._lock = lock

    def release(self) -> bool:
        try:
            self._lock.release()
        except LockNotOwnedError:
            return False
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Not "expired": Redis could not be asked. The key lives on until its TTL.
            raise LockReleaseUnavailableError(type(exc).__name__) from None
        except (LockError, RedisError):
            return False
        return True


class _AsyncRedisLease:
    def __init__(self, lock: Any) -> None:
        self._lock = lock

    async def release(self) -> bool:
        try:
            await self._lock.release()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Not "expired": Redis could not be asked. The key lives on until its TTL.
            raise LockReleaseUnavailableError(type(exc).__name__) from None
        except (LockError, RedisError):
            return False
        return True


class _SyncLeaseInThread:
    """A sync lease released off the event loop (its Redis round trip may block)."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease

    async def release(self) -> bool:
        return await asyncio.to_thread(self._lease.release)


# The sync client's connection settings an asyncio client takes too (the sync pool also carries
# sync-only internals).
_ASYNC_KWARGS = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "client_name",
    "health_check_interval",
)


class RedisLocks:
    """Distributed locks in Redis (redis-py ``Lock``: owner token, compare-and-delete release)."""

    def __init__(self, client: redis.Redis, prefix: str = "freshtoken:lock:") -> None:
        self._client = client
        self._prefix = prefix
        # redis.asyncio clients are bound to the loop that uses them: one per loop.
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]
        self._async_clients = weakref.WeakKeyDictionary()

    def _async_client(self) -> redis.asyncio.Redis | None:
        """An asyncio client with the sync client's connection settings (None for fakes)."""
        pool = self._client.connection_pool
        if pool.connection_class is not redis.connection.Connection:
            return None  # a test double (fakeredis) or an exotic transport: use the sync client
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            given = pool.connection_kwargs
            # No retries: redis.asyncio retries a timed-out command up to 10 times by default, so a
            # frozen Redis would hold a read for minutes instead of one socket timeout.
            client = redis.asyncio.Redis(
                **{k: given[k] for k in _ASYNC_KWARGS if k in given},
                retry=AsyncRetry(NoBackoff(), 0),
            )
            self._async_clients[loop] = client
        return client

    async def acquire_async(self, name: str, ttl: float, wait: float) -> AsyncLease | None:
        """Acquire ``prefix + name`` through redis.asyncio, polling every 10 ms up to ``wait``.

        Callers in one process already share one waiter per connection (the refresh flights), so
        the short poll costs little and a waiting process sees the release sooner.
        """
        client = self._async_client()
        if client is None:
            return await _poll_sync(self, name, ttl, wait)
        lock = client.lock(
            self._prefix + name, timeout=ttl, sleep=0.01, blocking=True, blocking_timeout=wait
        )
        try:
            acquired = await lock.acquire()
        except RedisError as exc:
            raise LockUnavailableError(type(exc).__name__) from None
        return _AsyncRedisLease(lock) if acquired else None

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        """One non-blocking attempt."""
        return self.acquire(name, ttl, 0.0)

    def acquire(self, name: str, ttl: float, wait: float) -> Lease | None:
        """Acquire ``prefix + name``, polling every 50 ms for up to ``wait`` seconds."""
        # thread_local=False: an async caller acquires and releases in different worker threads.
        lock = self._client.lock(
            self._prefix + name,
            timeout=ttl,
            sleep=0.05,
            blocking=True,
            blocking_timeout=wait,
            thread_local=False,
        )
        try:
            acquired = lock.acquire()
        except RedisError as exc:
            raise LockUnavailableError(type(exc).__name__) from None
        return _RedisLease(lock) if acquired else None


async def _poll_sync(locks: RedisLocks, name: str, ttl: float, wait: float) -> AsyncLease | None:
    """Poll a sync lock provider every 50 ms; each attempt runs off the loop, the wait does not."""
    deadline = time.monotonic() + wait
    while True:
        lease = await asyncio.to_thread(locks.try_acquire, name, ttl)
        if lease is not None:
            return _SyncLeaseInThread(lease)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(remaining, 0.05))


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

    async def acquire_async(self, name: str, ttl: float, wait: float) -> AsyncLease | None:
        """Acquire ``name`` or give up after ``wait`` seconds; the wait is asyncio sleeps.

        The table is shared with the sync :meth:`acquire` and across event loops (the API's and
        the sync shim's in the embedded mode), so it stays guarded by a thread lock, held only
        for the check itself.
        """
        deadline = time.monotonic() + wait
        token = object()
        while True:
            with self._cond:
                held = self._held.get(name)
                if held is None or held[1] <= self._monotonic():
                    self._held[name] = (token, self._monotonic() + ttl)
                    return _AsyncLocalLease(_LocalLease(self, name, token))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(remaining, 0.01))

    def _release(self, name: str, token: object) -> bool:
        with self._cond:
            held = self._held.get(name)
            if held is None or held[0] is not token:
                return False
            del self._held[name]
            self._cond.notify_all()
            return True


class _AsyncLocalLease:
    def __init__(self, lease: _LocalLease) -> None:
        self._lease = lease

    async def release(self) -> bool:
        return self._lease.release()


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
