"""The seam between the read API and the refresh engine.

The API's ``GET /connection(s)/{id}`` hands the row it read to a :class:`ReadRefresher`, which
returns the row and credentials to serve (refreshed if needed) or raises :class:`RefreshDenied`.
"""

from __future__ import annotations

from typing import Any, Protocol

from freshtoken.store.models import Connection


class RefreshDenied(Exception):
    """The connection's credentials cannot be served; the API answers ``invalid_credentials``.

    ``http_status`` is 400 when the provider rejected the refresh and 424 when freshtoken declined
    to try (exhausted, cooling down after a failure, or needing re-authorisation); 503 with code
    ``lock_unavailable`` when the lock service (Redis) is down, since refreshing without the lock
    could spend a rotating refresh token twice.
    """

    def __init__(
        self,
        *,
        http_status: int,
        reason: str,
        message: str,
        connection: Connection | None = None,
        log_id: str | None = None,
        code: str = "invalid_credentials",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.reason = reason
        self.message = message
        self.connection = connection
        self.log_id = log_id


class ReadRefresher(Protocol):
    """Decides on read whether a connection needs a refresh, and does it."""

    def refresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """Return the row and credentials to serve; raise RefreshDenied when none can be."""
        ...

    async def arefresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """The same, awaited on the API's event loop (waiting holds no thread)."""
        ...


class NoRefresh:
    """A ReadRefresher that never refreshes (serves what is stored)."""

    def refresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """Return the input unchanged."""
        return conn, credentials

    async def arefresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """Return the input unchanged."""
        return conn, credentials
