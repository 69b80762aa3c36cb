"""The Celery application: configuration, beat schedule, logging and per-task log context.

Tasks are thin (see :mod:`freshtoken.worker.tasks`): they take ids and call the scanner or the
refresh service held by the process's :class:`~freshtoken.runtime.Runtime`.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, signals

from freshtoken.runtime import Runtime
from freshtoken.settings import Settings

SCAN_TASK = "freshtoken.scan_due_connections"
REFRESH_TASK = "freshtoken.refresh_connection"
QUEUE = "freshtoken"

# Longest countdown the scanner or a retry ever uses; the broker's visibility timeout must exceed
# it plus the longest task, or Redis redelivers delayed messages in a loop.
MAX_COUNTDOWN_SECONDS = 1800
VISIBILITY_TIMEOUT_SECONDS = 3600


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for these settings."""
    task_soft_limit = settings.lock_ttl_seconds + 15
    return {
        "broker_url": settings.redis_url or "memory://localhost/",
        "broker_connection_retry_on_startup": True,
        # A broker outage is waited out, reconnecting with backoff, however long it lasts (the
        # default gives up after 100 tries and the worker exits); sockets time out instead of
        # hanging on a frozen Redis.
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        # A refresh running when the broker goes away finishes and stores its tokens (its
        # database write does not need the broker); the unacked message is redelivered later and
        # finds the row fresh (lock + re-read), so nothing is spent twice.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Result-less: nothing reads task results, and a result backend is one more thing to fail.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Ack after the task ran, and redeliver if the worker process died mid-task: the refresh
        # is idempotent (lock + re-read + compare-and-set), so running twice is safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": task_soft_limit,
        "task_time_limit": task_soft_limit + 15,
        "task_default_queue": QUEUE,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "scan-due-connections": {
                "task": SCAN_TASK,
                "schedule": settings.scan_interval_seconds,
                # A scan that could not start within one interval is superseded by the next.
                "options": {"expires": settings.scan_interval_seconds},
            },
            # Auth webhooks whose enqueue after commit was lost (or whose worker died).
            "sweep-webhooks": {
                "task": "freshtoken.sweep_webhooks",
                "schedule": settings.scan_interval_seconds,
                "options": {"expires": settings.scan_interval_seconds},
            },
        },
    }


def create_celery(settings: Settings, runtime: Runtime | None = None) -> Celery:
    """Build the Celery app. ``runtime`` is built lazily from the environment when not given."""
    from freshtoken.worker import tasks

    app = Celery("freshtoken", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.freshtoken_settings = settings
    app.freshtoken_runtime = runtime
    tasks.register(app)
    from freshtoken.webhooks import tasks as webhook_tasks

    webhook_tasks.register(app)
    if runtime is not None:
        runtime.extras.setdefault("celery_app", app)
    return app


def runtime_of(app: Celery) -> Runtime:
    """The runtime of this worker process (built on first use, after any fork)."""
    runtime: Runtime | None = getattr(app, "freshtoken_runtime", None)
    if runtime is None:
        from freshtoken.bootstrap import runtime_from_env

        runtime = runtime_from_env()
        runtime.extras.setdefault("celery_app", app)  # webhooks enqueue through this app
        app.freshtoken_runtime = runtime
    return runtime


@signals.setup_logging.connect
def _keep_our_logging(**_kwargs: Any) -> None:
    """Connecting here stops Celery from replacing the structlog configuration."""


@signals.task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, **_kwargs: Any) -> None:
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@signals.task_postrun.connect
def _clear_task_context(**_kwargs: Any) -> None:
    structlog.contextvars.clear_contextvars()
