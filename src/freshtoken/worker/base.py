"""The Celery app class and the base class of every freshtoken task.

:class:`FreshtokenCelery` holds the one settings object of the process and the runtime built from
it; :class:`RuntimeTask` gives each task that runtime as ``self.runtime``. The runtime is built on
the first task a process runs, so each prefork child builds its own after the fork (database
pools, Redis connections and threads never cross a fork), once.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery, Task

from freshtoken.bootstrap import runtime_from_settings
from freshtoken.runtime import Runtime
from freshtoken.settings import Settings
from freshtoken.worker.config import celery_config


class FreshtokenCelery(Celery):
    """A Celery app configured from ``settings``, holding this process's runtime."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        super().__init__("freshtoken", set_as_current=False)
        self.conf.update(celery_config(settings))
        self.freshtoken_settings = settings
        self._runtime = runtime
        self._runtime_lock = threading.Lock()
        if runtime is not None:
            self._adopt(runtime)

    @property
    def runtime(self) -> Runtime:
        """The runtime of this process: the one given, else built once from the settings."""
        with self._runtime_lock:
            if self._runtime is None:
                self._runtime = runtime_from_settings(self.freshtoken_settings)
                self._adopt(self._runtime)
            return self._runtime

    def _adopt(self, runtime: Runtime) -> None:
        # The runtime publishes its tasks (webhook deliveries) through this app unless it already
        # had a publisher (a producer built before the worker started, or a test's fake).
        if runtime.celery_app is None:
            runtime.celery_app = self


class RuntimeTask(Task[Any, Any]):
    """Base of every freshtoken task: ``self.runtime`` is the runtime of the app's process."""

    @property
    def runtime(self) -> Runtime:
        """The runtime of the process running this task (see :class:`FreshtokenCelery`)."""
        app = self.app
        if not isinstance(app, FreshtokenCelery):
            raise TypeError(f"task {self.name} needs a FreshtokenCelery app, not {app!r}")
        return app.runtime
