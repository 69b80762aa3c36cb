"""Pending writes: new credentials kept safe until the database has them.

A provider that rotates refresh tokens spends the old one the moment it answers. If the database
write then fails (PostgreSQL restarting, a network blip) and the new tokens were only in memory,
the connection would be stranded with a spent refresh token. So the refresh service stashes the
new credentials here (encrypted, bound to the row) *before* writing them, and deletes the stash
after the write commits. The next refresh attempt of that connection, under its lock, applies a
stash left behind instead of calling the provider.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

import orjson
from redis.exceptions import RedisError

if TYPE_CHECKING:
    import redis

# Long enough to outlive any outage worth surviving; short enough not to keep dead tokens forever.
PENDING_TTL_SECONDS = 7 * 24 * 3600


class PendingWrites(Protocol):
    """Where stashed credentials wait for the database."""

    def put(self, pk: int, version: int, ciphertext: str) -> bool:
        """Stash the ciphertext for the row at ``version``; False if it could not be kept."""
        ...

    def get(self, pk: int) -> tuple[int, str] | None:
        """The stashed (version, ciphertext) for a row, if any."""
        ...

    def delete(self, pk: int) -> None:
        """Forget the stash of a row."""
        ...


class RedisPendingWrites:
    """Stashes in Redis, so a stash survives the process that made it."""

    def __init__(self, client: redis.Redis, prefix: str = "freshtoken:pending:") -> None:
        self._client = client
        self._prefix = prefix

    def put(self, pk: int, version: int, ciphertext: str) -> bool:
        """Stash; Redis being down is reported, not raised (the DB write may still work)."""
        try:
            self._client.set(
                f"{self._prefix}{pk}",
                orjson.dumps({"version": version, "ciphertext": ciphertext}),
                ex=PENDING_TTL_SECONDS,
            )
        except RedisError:
            return False
        return True

    def get(self, pk: int) -> tuple[int, str] | None:
        """Read a stash (None when absent or Redis is unreachable)."""
        try:
            raw = self._client.get(f"{self._prefix}{pk}")
        except RedisError:
            return None
        if raw is None:
            return None
        value = orjson.loads(raw)
        return int(value["version"]), str(value["ciphertext"])

    def delete(self, pk: int) -> None:
        """Delete a stash (best effort: a leftover is harmless, its version no longer matches)."""
        try:
            self._client.delete(f"{self._prefix}{pk}")
        except RedisError:
            return


class LocalPendingWrites:
    """In-process stash for the embedded mode (covers database errors, not process crashes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, tuple[int, str]] = {}

    def put(self, pk: int, version: int, ciphertext: str) -> bool:
        """Stash in memory."""
        with self._lock:
            self._items[pk] = (version, ciphertext)
        return True

    def get(self, pk: int) -> tuple[int, str] | None:
        """Read a stash."""
        with self._lock:
            return self._items.get(pk)

    def delete(self, pk: int) -> None:
        """Delete a stash."""
        with self._lock:
            self._items.pop(pk, None)
