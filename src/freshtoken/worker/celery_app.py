"""The Celery application: built from the settings, with every task registered, plus the logging
hooks (Celery keeps structlog's configuration; each task's lines carry its id and name).

Tasks are thin (see :mod:`freshtoken.worker.tasks` and :mod:`freshtoken.webhooks.tasks`): they
take ids and call the scanner, the refresh service or the webhook sender held by the process's
:class:`~freshtoken.runtime.Runtime`. Names, queue, beat schedule and the rest of the
configuration are in :mod:`freshtoken.worker.config` (re-exported here for the callers that
import them from this module).
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task, signals

from freshtoken.runtime import Runtime
from freshtoken.settings import Settings
from freshtoken.webhooks import tasks as webhook_tasks
from freshtoken.worker import tasks as refresh_tasks
from freshtoken.worker.base import FreshtokenCelery
from freshtoken.worker.config import (
    MAX_COUNTDOWN_SECONDS,
    QUEUE,
    REFRESH_TASK,
    SCAN_TASK,
    SWEEP_TASK,
    VISIBILITY_TIMEOUT_SECONDS,
    WEBHOOK_TASK,
    celery_config,
)

__all__ = [
    "MAX_COUNTDOWN_SECONDS",
    "QUEUE",
    "REFRESH_TASK",
    "SCAN_TASK",
    "SWEEP_TASK",
    "VISIBILITY_TIMEOUT_SECONDS",
    "WEBHOOK_TASK",
    "FreshtokenCelery",
    "celery_config",
    "create_celery",
]

# Importing these modules declares their (shared) tasks, which Celery then registers on every app
# built below: the app needs them imported, nothing more.
_TASK_MODULES = (refresh_tasks, webhook_tasks)


def create_celery(settings: Settings, runtime: Runtime | None = None) -> FreshtokenCelery:
    """Build the Celery app. ``runtime`` is built from ``settings`` on first use when not given."""
    return FreshtokenCelery(settings, runtime)


@signals.setup_logging.connect
def _keep_our_logging(**_kwargs: Any) -> None:
    """Connecting here stops Celery from replacing the structlog configuration."""


@signals.task_prerun.connect
def _bind_task_context(
    task_id: str | None = None, task: Task[Any, Any] | None = None, **_kwargs: Any
) -> None:
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@signals.task_postrun.connect
def _clear_task_context(**_kwargs: Any) -> None:
    structlog.contextvars.clear_contextvars()
