"""Per-process coalescing of refreshes, with the forced-refresh rule, on asyncio.

Callers in one event loop that want the same connection refreshed share one *flight* (one task
running the refresh core), so 200 readers in an API process cost one lock wait and at most one
provider call. The rule for forced reads (``force_refresh=true``):

* a forced read is satisfied by any refresh whose provider request was sent after it arrived;
* so it may join a flight that has not yet *decided* (taken the lock and chosen to call the
  provider or not): that decision, and any request it sends, comes after the read arrived;
* a forced read arriving after the decision waits for the *next* flight, which starts once the
  current one ends; every forced read arriving meanwhile shares that one next flight.

A non-forced read joins whatever is in flight: any refresh serves it.

The flight runs as its own task, so a caller that goes away (a client disconnect cancelling the
request) cannot abort a refresh midway through a rotation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Flight(Generic[T]):
    """One shared refresh. The core reads ``force``/``fresh_since`` when it decides."""

    force: bool
    fresh_since: dt.datetime | None
    decided: bool = False
    task: asyncio.Task[T] | None = field(default=None, repr=False)

    def decide(self) -> None:
        """Called by the refresh core at its decision point: later forced reads need a new one."""
        self.decided = True


class Flights(Generic[T]):
    """The flights of each event loop, keyed by connection."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[object, list[Flight[T]]]
        ] = weakref.WeakKeyDictionary()

    def _table(self) -> dict[object, list[Flight[T]]]:
        loop = asyncio.get_running_loop()
        table = self._by_loop.get(loop)
        if table is None:
            table = self._by_loop[loop] = {}
        return table

    async def join(
        self,
        key: object,
        *,
        force: bool,
        arrived: dt.datetime | None,
        run: Callable[[Flight[T]], Awaitable[T]],
    ) -> tuple[T, bool]:
        """Share a suitable flight for ``key`` or start one; returns (result, shared)."""
        table = self._table()
        queue = table.setdefault(key, [])
        flight: Flight[T] | None = None
        if not force:
            flight = queue[0] if queue else None
        else:
            flight = next((f for f in queue if not f.decided), None)
            if flight is not None:
                flight.force = True
                if arrived is not None and (
                    flight.fresh_since is None or arrived > flight.fresh_since
                ):
                    flight.fresh_since = arrived
        if flight is not None:
            assert flight.task is not None
            return await asyncio.shield(flight.task), True
        flight = Flight(force=force, fresh_since=arrived if force else None)
        previous = [f.task for f in queue if f.task is not None]
        flight.task = asyncio.get_running_loop().create_task(self._run(key, flight, previous, run))
        queue.append(flight)
        return await asyncio.shield(flight.task), False

    async def _run(
        self,
        key: object,
        flight: Flight[T],
        previous: list[asyncio.Task[T]],
        run: Callable[[Flight[T]], Awaitable[T]],
    ) -> T:
        try:
            if previous:
                # The next forced flight starts when the current one has ended, so the row it
                # re-reads under the lock already holds the current flight's token.
                await asyncio.wait(previous)
            return await run(flight)
        finally:
            table = self._table()
            queue = table.get(key)
            if queue is not None:
                if flight in queue:
                    queue.remove(flight)
                if not queue:
                    del table[key]
