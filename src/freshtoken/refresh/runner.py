"""The sync shim: run the async refresh core from synchronous callers (Celery tasks, the CLI).

The refresh core is async (waiting on the lock or the provider holds no thread). Sync callers
submit its coroutines to one event loop running in a daemon thread of their own process, started
on first use; concurrent callers (a threaded Celery pool) share that loop, so their waits cost no
extra thread either. After a fork (Celery's prefork pool), the child starts its own loop: a loop
thread does not survive ``fork``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopRunner:
    """A private event loop in a daemon thread; :meth:`run` blocks until a coroutine finishes."""

    def __init__(self, name: str = "freshtoken-refresh-loop") -> None:
        self._name = name
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None or self._pid != os.getpid() or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=self._name, daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and return its result (or raise its exception)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._ensure()
        if running is loop:
            coro.close()
            raise RuntimeError("LoopRunner.run called from its own loop: await the coroutine")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def close(self) -> None:
        """Stop the loop thread (idempotent)."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None and self._pid == os.getpid():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
