"""Locks that hold across processes on one machine, for deployments without Redis.

Without Redis every process used to have its own in-process locks, so ``freshtoken refresh`` (or
a second ``api --workers`` process, or the worker next to ``dev``) could refresh a connection at
the same moment as another process and spend its rotating refresh token twice: the provider then
revokes the whole token family. :class:`FileLocks` takes an OS lock (``flock``) on a file per lock
name in a directory next to the SQLite file (or in the data dir), which every process on the
machine shares.

An OS lock needs no TTL: the kernel drops it when the holder's process exits, however it exits.
The refresh write is still a compare-and-set on ``version``, as with Redis.

Several hosts cannot share these locks; :func:`local_lock_dir` refuses to start a production
refresher on PostgreSQL without Redis (the one configuration that can span hosts) unless
``FRESHTOKEN_SINGLE_HOST=true`` says every process runs on this machine.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from freshtoken.errors import ConfigError
from freshtoken.refresh.locks import AsyncLease, Lease
from freshtoken.settings import Settings, make_private_dir

_POLL_SECONDS = 0.05


class _FileLease:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> bool:
        fd, self._fd = self._fd, None
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return True


class _AsyncFileLease:
    """A file lease for the async core: ``flock(LOCK_UN)`` and ``close`` never block."""

    def __init__(self, lease: _FileLease) -> None:
        self._lease = lease

    async def release(self) -> bool:
        return self._lease.release()


class FileLocks:
    """A :class:`~freshtoken.refresh.locks.LockProvider` on ``flock``: one file per lock name.

    ``flock`` locks belong to an open file description, so two threads of one process (each
    opening the file) exclude each other exactly like two processes do.
    """

    def __init__(self, directory: Path) -> None:
        make_private_dir(directory)
        self._dir = directory

    def _path(self, name: str) -> Path:
        # Names are like "refresh:42"; hash anything unusual rather than trust it in a path.
        safe = name.replace(":", "-")
        if not safe.replace("-", "").replace("_", "").isalnum():
            safe = hashlib.sha256(name.encode()).hexdigest()[:32]
        return self._dir / f"{safe}.lock"

    def acquire(self, name: str, ttl: float, wait: float) -> Lease | None:
        """Take the lock, polling every 50 ms for up to ``wait`` seconds; None on timeout.

        ``ttl`` is not needed: the kernel releases the lock when its holder's process ends.
        """
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(_POLL_SECONDS)
                continue
            except BaseException:
                os.close(fd)
                raise
            return _FileLease(fd)

    async def acquire_async(self, name: str, ttl: float, wait: float) -> AsyncLease | None:
        """:meth:`acquire` for the async core: non-blocking attempts, asyncio sleeps between them.

        Each attempt is one ``flock(LOCK_NB)`` system call, so waiting holds no thread.
        """
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    os.close(fd)
                    return None
                await asyncio.sleep(min(remaining, _POLL_SECONDS))
                continue
            except BaseException:
                os.close(fd)
                raise
            return _AsyncFileLease(_FileLease(fd))


def local_lock_dir(settings: Settings) -> Path:
    """Where the file locks live: next to the SQLite file, else in the data dir.

    Raises ConfigError when the deployment may span hosts without Redis (production on a
    server database, no ``FRESHTOKEN_SINGLE_HOST=true``): file locks cannot protect it.
    """
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        return db.with_name(db.name + ".locks")
    if settings.env == "production" and not settings.single_host:
        raise ConfigError(
            "FRESHTOKEN_REDIS_URL is required in production with a server database: processes "
            "on several hosts cannot share locks without it (set FRESHTOKEN_SINGLE_HOST=true if "
            "every freshtoken process runs on this one machine)"
        )
    return settings.data_dir / "locks"
