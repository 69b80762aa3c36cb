""" "Attempt started" markers: knowing that a refresh's outcome was never recorded.

Right before a refresh token is sent, the refresh core marks the connection (its row ``version``
and the send time); the mark is cleared once the outcome is stored (new tokens written, or a
failure the provider answered). A mark still there for the same ``version`` at the next attempt
means an earlier call may have spent the refresh token and its answer was lost: a worker killed
mid-call, a client timeout after the provider rotated. Then:

- within the provider's ``refresh_token_reuse_grace_seconds`` the old refresh token still works
  once, so the next attempt simply recovers;
- outside it, the first ``invalid_grant`` is reported as ``refresh_token_lost_in_flight`` (the
  connection needs re-authorisation at once; nobody sends the dead token again).

Marks live in Redis next to the locks (they must outlive the process that wrote them) and expire
after a day; the embedded mode keeps them in memory. Failures of the mark store never block a
refresh: a lost mark only costs the precise ``error_code``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from freshtoken.logs import get_logger

if TYPE_CHECKING:
    import redis

    from freshtoken.providers.catalog import ProviderSpec

log = get_logger("freshtoken.refresh")

LOST_IN_FLIGHT = "refresh_token_lost_in_flight"
_TTL_SECONDS = 86400


@dataclass(frozen=True)
class Mark:
    """A refresh sent for the row at ``version`` at ``started_at`` (epoch seconds)."""

    version: int
    started_at: float


class InFlightMarks(Protocol):
    """Where "attempt started" marks are kept."""

    def start(self, pk: int, mark: Mark) -> None:
        """Record that a refresh of ``pk`` is being sent (replaces any earlier mark)."""
        ...

    def get(self, pk: int) -> Mark | None:
        """The mark of ``pk``, if any."""
        ...

    def clear(self, pk: int) -> None:
        """The outcome is recorded: forget the mark."""
        ...


class LocalInFlightMarks:
    """In-process marks (embedded mode, tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[int, Mark] = {}

    def start(self, pk: int, mark: Mark) -> None:
        """Record the mark in memory."""
        with self._lock:
            self._marks[pk] = mark

    def get(self, pk: int) -> Mark | None:
        """The mark of ``pk``, if any."""
        with self._lock:
            return self._marks.get(pk)

    def clear(self, pk: int) -> None:
        """Forget the mark."""
        with self._lock:
            self._marks.pop(pk, None)


class RedisInFlightMarks:
    """Marks in Redis (``freshtoken:inflight:<pk>`` = ``<version>:<epoch>``, one day TTL)."""

    def __init__(self, client: redis.Redis, prefix: str = "freshtoken:inflight:") -> None:
        self._client = client
        self._prefix = prefix

    def start(self, pk: int, mark: Mark) -> None:
        """Record the mark; a Redis error is logged, never raised."""
        try:
            self._client.set(
                f"{self._prefix}{pk}", f"{mark.version}:{mark.started_at:.3f}", ex=_TTL_SECONDS
            )
        except RedisError as exc:
            log.warning("refresh.inflight.unavailable", connection_pk=pk, error=type(exc).__name__)

    def get(self, pk: int) -> Mark | None:
        """The mark of ``pk``; None when absent, unreadable or Redis is down."""
        try:
            raw: Any = self._client.get(f"{self._prefix}{pk}")
        except RedisError as exc:
            log.warning("refresh.inflight.unavailable", connection_pk=pk, error=type(exc).__name__)
            return None
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        version, _, started = text.partition(":")
        try:
            return Mark(int(version), float(started))
        except ValueError:
            return None

    def clear(self, pk: int) -> None:
        """Forget the mark; a Redis error is logged, never raised."""
        try:
            self._client.delete(f"{self._prefix}{pk}")
        except RedisError as exc:
            log.warning("refresh.inflight.unavailable", connection_pk=pk, error=type(exc).__name__)


def reuse_grace_seconds(spec: ProviderSpec | None) -> float:
    """The provider's ``refresh_token_reuse_grace_seconds`` (0: a spent token is dead at once).

    Some providers accept a just-rotated refresh token once more for a short while (Okta, Auth0,
    Atlassian, Xero call it reuse interval / leeway / grace); the catalog entry says how long.
    """
    value = spec.raw.get("refresh_token_reuse_grace_seconds") if spec is not None else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value > 0 else 0.0
