"""The seam between the read API and the refresh engine.

The API's ``GET /connection(s)/{id}`` hands the row it read to a :class:`ReadRefresher`, which
returns the row and credentials to serve (refreshed if needed) or raises :class:`RefreshDenied`
with a :class:`Refusal`: *why* nothing can be served. How a refusal is answered (status, code,
message) is the API's business: :mod:`freshtoken.api.read_gate`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from freshtoken.store.models import Connection


class Refusal(StrEnum):
    """Why the refresh core cannot serve a connection's credentials."""

    # Declined without trying: the failure budget is spent (4 days of failures).
    EXHAUSTED = "exhausted"
    # Declined without trying: the provider rejected the grant; someone must re-authorise.
    NEEDS_REAUTH = "needs_reauth"
    # Declined without trying: a transient failure is seconds old (the read retry backoff).
    COOLDOWN = "cooldown"
    # Another holder kept the connection's lock past the wait, and left no fresh token.
    LOCK_TIMEOUT = "lock_timeout"
    # No slot of the provider's rate limit within a waiting caller's budget.
    RATE_LIMITED = "rate_limited"
    # The lock service (Redis) is down: refreshing without the lock could spend a rotating
    # refresh token twice, so nobody refreshes.
    LOCK_UNAVAILABLE = "lock_unavailable"
    # The provider refused the refresh for good (invalid_grant and its forms).
    PROVIDER_REJECTED = "provider_rejected"
    # The refresh failed for any other reason (timeout, 5xx, ...) and the token is expired.
    FAILED = "failed"


class RefreshDenied(Exception):
    """The connection's credentials cannot be served, for ``reason``.

    ``connection`` is the newest row the core saw (shown to the caller without credentials) and
    ``log_id`` the ``token.refresh`` line (or the recorded failure) that explains the refusal.
    """

    def __init__(
        self,
        reason: Refusal,
        *,
        connection: Connection | None = None,
        log_id: str | None = None,
    ) -> None:
        super().__init__(reason.value)
        self.reason = reason
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
