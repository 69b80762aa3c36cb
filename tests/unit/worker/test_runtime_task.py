"""Module-level tasks get their process's runtime from the app they are registered on.

Every app ``create_celery`` builds registers the same module-level tasks; each app's tasks see
that app's runtime (given, or built once from the app's own settings, never from the
environment), and the runtime publishes its webhook deliveries through that app unless it
already has a publisher.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from celery import Celery
from tests.support import make_runtime, make_settings

from freshtoken.worker.base import FreshtokenCelery, RuntimeTask
from freshtoken.worker.celery_app import create_celery
from freshtoken.worker.config import (
    QUEUE,
    REFRESH_TASK,
    SCAN_TASK,
    SWEEP_TASK,
    WEBHOOK_TASK,
    beat_schedule,
)

TASK_NAMES = {SCAN_TASK, REFRESH_TASK, WEBHOOK_TASK, SWEEP_TASK}


def test_each_app_registers_the_tasks_with_its_own_runtime(tmp_path: Path) -> None:
    """Two apps over two runtimes: each task of each app sees its own app's runtime."""
    first = make_runtime(make_settings(tmp_path / "a"))
    second = make_runtime(make_settings(tmp_path / "b"))
    try:
        apps = create_celery(first.settings, first), create_celery(second.settings, second)
        for app, runtime in zip(apps, (first, second), strict=True):
            assert set(app.tasks) >= TASK_NAMES
            for name in TASK_NAMES:
                task = app.tasks[name]
                assert isinstance(task, RuntimeTask)
                assert task.app is app
                assert task.runtime is runtime
    finally:
        first.close()
        second.close()


def test_the_runtime_is_built_once_from_the_apps_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a runtime the app builds one from its settings on first use (not the env), once."""
    monkeypatch.setenv("FRESHTOKEN_DATA_DIR", str(tmp_path / "elsewhere"))
    settings = make_settings(tmp_path)
    app = create_celery(settings)
    built: list[object] = []

    def runtime_of_a_task() -> None:
        built.append(app.tasks[REFRESH_TASK].runtime)

    threads = [threading.Thread(target=runtime_of_a_task) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runtime = app.runtime
    try:
        assert all(r is runtime for r in built) and len(built) == 4
        assert runtime.settings is settings
        assert runtime.celery_app is app  # its webhook deliveries go through this app
        assert runtime.refresh_service is not None
    finally:
        runtime.close()


def test_a_runtime_keeps_the_publisher_it_already_has(tmp_path: Path) -> None:
    """An app adopts a runtime's publishing only when the runtime has no publisher yet."""
    runtime = make_runtime(make_settings(tmp_path))
    try:
        producer = runtime.task_sender()  # built on first use, on the settings' broker
        assert isinstance(producer, Celery) and not isinstance(producer, FreshtokenCelery)
        assert producer.conf.broker_url.startswith("memory://")
        assert producer.conf.task_default_queue == QUEUE
        assert runtime.task_sender() is producer
        create_celery(runtime.settings, runtime)
        assert runtime.celery_app is producer
    finally:
        runtime.close()


def test_a_task_outside_a_freshtoken_app_says_so() -> None:
    """A freshtoken task registered on a plain Celery app has no runtime to give."""
    plain = Celery("other", set_as_current=False)
    task = plain.tasks[SCAN_TASK]
    with pytest.raises(TypeError, match="FreshtokenCelery"):
        _ = task.runtime


def test_webhook_time_limits_follow_the_webhook_timeout(tmp_path: Path) -> None:
    """Up to three attempts per delivery run: the limits are three timeouts plus a margin."""
    app = create_celery(make_settings(tmp_path, webhook_timeout_seconds=7))
    deliver = app.tasks[WEBHOOK_TASK]
    assert (deliver.soft_time_limit, deliver.time_limit) == (7 * 3 + 30, 7 * 3 + 45)
    # The other tasks keep the configuration's limits.
    refresh = app.tasks[REFRESH_TASK]
    assert (refresh.soft_time_limit, refresh.time_limit) == (
        app.conf.task_soft_time_limit,
        app.conf.task_time_limit,
    )


def test_beat_schedule_is_the_config_modules(tmp_path: Path) -> None:
    """The app's beat schedule is the one worker.config defines for these settings."""
    settings = make_settings(tmp_path, scan_interval_seconds=12)
    assert create_celery(settings).conf.beat_schedule == beat_schedule(settings)
