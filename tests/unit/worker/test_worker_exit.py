"""``freshtoken worker``/``beat`` exit non-zero when Celery stops on an unrecoverable error.

Celery's ``app.worker_main()`` drops the exit code: a worker killed by kombu's restore_unacked
bug during a Redis outage exited 0, which an on-failure restart policy leaves dead (#16).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, _state
from celery.bin.celery import celery as celery_command
from click.testing import CliRunner
from tests.support import ENCRYPTION_KEY, SECRET_KEY, make_runtime, make_settings

from freshtoken.cli import main


@pytest.mark.parametrize("role", ["worker", "beat"])
@pytest.mark.parametrize("celery_code", [1, None])
def test_worker_and_beat_exit_with_celerys_code(
    role: str, celery_code: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's failure code (EX_FAILURE after "Unrecoverable error") becomes the process's exit
    code; a clean stop stays 0."""
    settings = make_settings(tmp_path)
    make_runtime(settings).close()
    seen: list[list[str]] = []

    def fake_main(*, args: list[str], standalone_mode: bool) -> Any:
        # What click does with Celery's ``ctx.exit(worker.exitcode)`` when not standalone.
        assert not standalone_mode
        assert isinstance(celery_command.params[0].default, Celery)  # the app is handed over
        seen.append(list(args))
        return celery_code

    monkeypatch.setattr(celery_command, "main", fake_main)
    env = {
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_DATABASE_URL": settings.resolved_database_url,
        "FRESHTOKEN_REDIS_URL": "redis://127.0.0.1:1/0",
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    result = CliRunner().invoke(main, [role], env=env)
    assert seen and seen[0][0] == role, result.output
    assert result.exit_code == (celery_code or 0), result.output
    assert celery_command.params[0].default is None  # handed back


@pytest.fixture
def celery_process_state() -> Iterator[None]:
    """Undo what running a worker in this process leaves behind for the tests after it.

    A worker marks the process as one (``result.get()`` then refuses to block, which the tests
    that run a task with ``Task.apply`` rely on) and makes its app the current and default one.
    """
    blocks = _state._task_join_will_block
    default = _state.default_app
    current = getattr(_state._tls, "current_app", None)
    yield
    _state._set_task_join_will_block(blocks)
    _state.set_default_app(default)
    _state._tls.current_app = current


@pytest.mark.usefixtures("celery_process_state")
def test_a_real_unrecoverable_error_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose consumer dies as kombu's restore_unacked bug makes it die ("Unrecoverable
    error: AttributeError") exits 1 (it used to exit 0), quickly."""
    from celery.worker.consumer import consumer

    def broken(_self: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    monkeypatch.setattr(consumer.Consumer, "start", broken)
    settings = make_settings(tmp_path)
    make_runtime(settings).close()
    env = {
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_DATABASE_URL": settings.resolved_database_url,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    result = CliRunner().invoke(main, ["worker", "--embedded", "--pool", "solo"], env=env)
    assert result.exit_code == 1, result.output
