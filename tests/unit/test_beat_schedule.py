"""The beat schedule and Celery configuration agree with the tasks and the broker's limits."""

from __future__ import annotations

from pathlib import Path

from tests.support import make_settings

from freshtoken.webhooks import SWEEP_TASK, WEBHOOK_TASK
from freshtoken.worker.celery_app import (
    MAX_COUNTDOWN_SECONDS,
    QUEUE,
    REFRESH_TASK,
    SCAN_TASK,
    VISIBILITY_TIMEOUT_SECONDS,
    create_celery,
)


def test_every_beat_entry_names_a_registered_task(tmp_path: Path) -> None:
    """Each beat entry runs a registered task and expires within its own interval."""
    app = create_celery(make_settings(tmp_path, scan_interval_seconds=30))
    schedule = app.conf.beat_schedule
    assert set(schedule) == {"scan-due-connections", "sweep-webhooks"}
    for entry in schedule.values():
        assert entry["task"] in app.tasks
        assert entry["options"]["expires"] <= entry["schedule"]
    assert {SCAN_TASK, REFRESH_TASK, WEBHOOK_TASK, SWEEP_TASK} <= set(app.tasks)


def test_delivery_guarantees(tmp_path: Path) -> None:
    """acks_late + reject on worker loss, prefetch 1, JSON only, no result backend, time limits."""
    settings = make_settings(tmp_path)
    conf = create_celery(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_ignore_result and not conf.result_backend
    assert conf.task_soft_time_limit > settings.lock_ttl_seconds
    assert conf.task_time_limit > conf.task_soft_time_limit
    assert conf.task_default_queue == QUEUE


def test_visibility_timeout_outlasts_every_delay(tmp_path: Path) -> None:
    """Redis redelivers unacked messages after the visibility timeout; it must exceed any delay."""
    conf = create_celery(make_settings(tmp_path)).conf
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility == VISIBILITY_TIMEOUT_SECONDS
    assert visibility > MAX_COUNTDOWN_SECONDS + conf.task_time_limit


def test_embedded_mode_uses_the_memory_broker(tmp_path: Path) -> None:
    """Without Redis the broker is in-process; with Redis it is Redis."""
    assert create_celery(make_settings(tmp_path)).conf.broker_url.startswith("memory://")
    with_redis = make_settings(tmp_path, redis_url="redis://127.0.0.1:6379/3")
    assert create_celery(with_redis).conf.broker_url == "redis://127.0.0.1:6379/3"
