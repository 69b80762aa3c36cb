"""Celery's side of the contract, in one module: task names, the queue, the beat schedule and the
broker configuration.

Nothing here imports Celery or the runtime, so any module (the runtime's webhook hand-off, the
tasks, the embedded beat, the CLI) can read these names without pulling in the worker. Task
names, the queue and the beat entries are part of the deployment's contract (dashboards, queued
messages and the tests name them): change them only with a migration plan.
"""

from __future__ import annotations

from typing import Any

from freshtoken.settings import Settings

SCAN_TASK = "freshtoken.scan_due_connections"
REFRESH_TASK = "freshtoken.refresh_connection"
WEBHOOK_TASK = "freshtoken.deliver_webhook"
SWEEP_TASK = "freshtoken.sweep_webhooks"
QUEUE = "freshtoken"

# Longest countdown the scanner or a retry ever uses; the broker's visibility timeout must exceed
# it plus the longest task, or Redis redelivers delayed messages in a loop.
MAX_COUNTDOWN_SECONDS = 1800
VISIBILITY_TIMEOUT_SECONDS = 3600


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The periodic tasks beat publishes (the embedded beat thread publishes the same two)."""
    return {
        "scan-due-connections": {
            "task": SCAN_TASK,
            "schedule": settings.scan_interval_seconds,
            # A scan that could not start within one interval is superseded by the next.
            "options": {"expires": settings.scan_interval_seconds},
        },
        # Auth webhooks whose enqueue after commit was lost (or whose worker died).
        "sweep-webhooks": {
            "task": SWEEP_TASK,
            "schedule": settings.scan_interval_seconds,
            "options": {"expires": settings.scan_interval_seconds},
        },
    }


def task_annotations(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per-task options that depend on the settings (Celery applies them when a task binds)."""
    return {
        # Up to three attempts per run (WebhookSender.deliver), each bounded by the timeout.
        WEBHOOK_TASK: {
            "soft_time_limit": settings.webhook_timeout_seconds * 3 + 30,
            "time_limit": settings.webhook_timeout_seconds * 3 + 45,
        },
    }


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
        "task_annotations": task_annotations(settings),
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": beat_schedule(settings),
    }
