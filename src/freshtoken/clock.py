"""The clock seam: every time-dependent decision asks a Clock so tests can drive time."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Something that tells the time (wall clock, UTC) and a monotonic time."""

    def now(self) -> dt.datetime:
        """Return the current time as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic time in seconds, for measuring durations."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """Return the current time as an aware UTC datetime."""
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        """Return time.monotonic()."""
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
        self._mono = 1000.0

    def now(self) -> dt.datetime:
        """Return the frozen current time."""
        return self._now

    def monotonic(self) -> float:
        """Return the frozen monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds`."""
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, when: dt.datetime) -> None:
        """Jump the wall clock to `when` (the monotonic clock moves by the same amount)."""
        self._mono += max(0.0, (when - self._now).total_seconds())
        self._now = when
