"""Hammering a rate limiter from many threads (the in-process and the Redis limiter tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Acquire = Callable[[], float]


def hammer(
    make_acquire: Callable[[], Acquire], *, threads: int, window: float, now: Callable[[], float]
) -> tuple[int, float]:
    """Let ``threads`` callers take slots as fast as allowed for ``window`` seconds.

    Returns the grants that happened inside ``[start, start + window]`` and ``start``. A grant is
    timed after ``acquire`` returned, so a grant counted here really happened inside the window.
    """
    barrier = threading.Barrier(threads + 1)
    grants: list[float] = []
    lock = threading.Lock()
    start = 0.0

    def run() -> None:
        acquire = make_acquire()
        barrier.wait()
        while now() < start + window:
            wait = acquire()
            if wait == 0:
                with lock:
                    grants.append(now())
            else:
                assert wait > 0
                time.sleep(min(wait, 0.005))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    start = now()
    barrier.wait()
    for w in workers:
        w.join(window + 10)
    return sum(1 for g in grants if g <= start + window), start
