"""The first hour with the CLI: one-line errors, stdout/stderr, log format, ports, keys.

Most checks run the real ``freshtoken`` command in a subprocess (what a newcomer types), from a
fresh working directory, and look at its exit code, stdout and stderr separately.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.support import (
    ENCRYPTION_KEY,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
)

from freshtoken.db.engine import make_engine
from freshtoken.logs import configure_logging, console_renderer, get_logger
from freshtoken.mockprovider import MockProvider
from freshtoken.settings import Settings, postgres_driver_url, resolve_dev_keys

CLI = [sys.executable, "-m", "freshtoken.cli"]


def _env(**values: str) -> dict[str, str]:
    """This process's environment without FRESHTOKEN_* (the developer's shell), plus values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


def _run(
    args: list[str], cwd: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the command failed with exactly one line on stderr and nothing on stdout."""
    assert result.returncode != 0, result
    assert result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("freshtoken: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- item 5: a data dir without a schema ---------------------------------------------------------


def test_another_directory_without_a_schema_is_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    """From a directory with no data: one line naming the database and `db upgrade`, no files.

    No keys are generated and no empty database is created on the way to the error.
    """
    for args in (["refresh", "demo", "demo-1"], ["db", "check"], ["keys", "rotate"]):
        result = _run(args, tmp_path)
        line = _one_line_error(result)
        assert result.returncode == 2
        assert "freshtoken db upgrade" in line
        assert str(tmp_path / ".freshtoken" / "freshtoken.db") in line
        assert list(tmp_path.iterdir()) == [], "nothing may be created by a failed command"


def test_existing_database_without_tables_says_db_upgrade(tmp_path: Path) -> None:
    """A database file that exists but has no schema: the same one line, nothing else."""
    db = tmp_path / "empty.db"
    db.touch()
    result = _run(["db", "check"], tmp_path, FRESHTOKEN_DATABASE_URL=f"sqlite:///{db}")
    line = _one_line_error(result)
    assert "no freshtoken schema" in line and "freshtoken db upgrade" in line


# -- item 6: one-line errors ---------------------------------------------------------------------


def test_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    """`db check` against a PostgreSQL that is not there: one line, exit 1, no password."""
    port = _free_port()  # nothing listens there
    result = _run(
        ["db", "check"],
        tmp_path,
        FRESHTOKEN_DATABASE_URL=f"postgres://someone:hunter2-secret@127.0.0.1:{port}/db",
    )
    line = _one_line_error(result)
    assert result.returncode == 1
    assert "cannot use the database" in line and "FRESHTOKEN_DATABASE_URL" in line
    assert f"127.0.0.1:{port}" in line
    assert "hunter2-secret" not in result.stderr


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgres_urls_map_to_the_installed_driver(scheme: str, tmp_path: Path) -> None:
    """`postgres://` and `postgresql://` use psycopg 3 (no NoSuchModuleError, no psycopg2)."""
    url = f"{scheme}://u:p@db.example:5432/freshtoken"
    assert postgres_driver_url(url) == "postgresql+psycopg://u:p@db.example:5432/freshtoken"
    settings = Settings(data_dir=tmp_path, database_url=url)
    engine = make_engine(settings)  # builds the dialect without connecting
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_unsupported_database_url_is_one_line(tmp_path: Path) -> None:
    """A URL for a database freshtoken does not support: one line saying which ones it does."""
    result = _run(["db", "check"], tmp_path, FRESHTOKEN_DATABASE_URL="mysql://u@h/d")
    line = _one_line_error(result)
    assert "postgresql://" in line and "sqlite:///" in line


def test_unexpected_errors_are_one_line_with_a_way_to_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error nobody foresaw still prints one line (type and message) and exits 1."""
    from click.testing import CliRunner

    from freshtoken import cli, migrate

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(migrate, "upgrade", boom)
    env = {
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "FRESHTOKEN_LOG_FORMAT": "json",
    }
    result = CliRunner().invoke(cli.main, ["db", "upgrade"], env=env)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "freshtoken: unexpected error: RuntimeError: disk on fire "
        "(FRESHTOKEN_TRACEBACK=1 shows the traceback)"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["refresh"], "Missing argument 'PROVIDER_CONFIG_KEY'"),
        (["nope"], "No such command 'nope'"),
        (["report", "/nonexistent/run.log"], "does not exist"),
    ],
)
def test_usage_errors_are_one_line_with_where_to_look(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    """Click's usage errors are one line too, naming the --help that explains the usage."""
    result = _run(args, tmp_path)
    line = _one_line_error(result)
    assert result.returncode == 2
    assert expected in line and "--help`" in line


# -- item 7: worker and beat need Redis ----------------------------------------------------------


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_refuse_without_redis(role: str, tmp_path: Path) -> None:
    """Without FRESHTOKEN_REDIS_URL a separate worker/beat refuses and says why and what to do."""
    result = _run([role], tmp_path)
    line = _one_line_error(result)
    assert result.returncode == 2
    assert "FRESHTOKEN_REDIS_URL" in line and "--embedded" in line and "freshtoken dev" in line
    assert list(tmp_path.iterdir()) == []


# -- item 8: results on stdout, logs on stderr ---------------------------------------------------


def test_results_go_to_stdout_and_logs_to_stderr(tmp_path: Path) -> None:
    """`refresh` prints exactly its JSON result on stdout; log lines go to stderr.

    `db check` prints only its verdict on stdout and none of Alembic's set-up chatter.
    """
    settings = make_settings(tmp_path)
    runtime = make_runtime(settings)
    env = {
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_DATABASE_URL": settings.resolved_database_url,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    with MockProvider() as provider:
        add_oauth2_connection(runtime, provider, connection_id="c1")
        result = _run(["refresh", "mock", "c1"], tmp_path, **env)
    runtime.close()
    assert result.returncode == 0, result.stderr
    stdout_lines = result.stdout.strip().splitlines()
    assert len(stdout_lines) == 1
    assert json.loads(stdout_lines[0])["outcome"] == "success"
    events = [json.loads(line)["event"] for line in result.stderr.strip().splitlines()]
    assert "token.refresh" in events  # not a TTY: JSON lines

    check = _run(["db", "check"], tmp_path, **env)
    assert check.returncode == 0
    assert check.stdout == "schema matches the models\n"
    assert "Context impl" not in check.stderr and "Will assume" not in check.stderr


# -- item 4: keys_generated only when generated --------------------------------------------------


def test_keys_generated_is_logged_only_when_keys_are_generated(tmp_path: Path) -> None:
    """The first command generates the keys (and says so); later ones load them silently."""
    first = _run(["db", "upgrade"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "database at head\n"
    warnings = [json.loads(x) for x in first.stderr.splitlines() if "keys_generated" in x]
    assert len(warnings) == 1
    assert warnings[0]["variables"] == ["FRESHTOKEN_SECRET_KEY", "FRESHTOKEN_ENCRYPTION_KEY"]
    again = _run(["db", "check"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "keys_generated" not in again.stderr
    settings = Settings(data_dir=tmp_path / ".freshtoken")
    assert resolve_dev_keys(settings)[1] == []


# -- item 3: console format on a terminal, JSON elsewhere ---------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def _log_one_refresh(fmt: str, tty: bool) -> str:
    stream = _Stream(tty)
    root_handlers = list(__import__("logging").getLogger().handlers)
    try:
        configure_logging("INFO", fmt, stream=stream)
        get_logger("freshtoken.refresh").info(
            "token.refresh",
            connection_id="demo-1",
            connection_pk=1,
            provider_config_key="demo",
            provider="oauth2",
            trigger="scheduled",
            outcome="success",
            error_code=None,
            error_class=None,
            http_status=200,
            duration_ms=8.2,
            lock_wait_ms=0.1,
            seconds_to_expiry=45.0,
            new_expires_at="2026-11-30T05:46:18.467Z",
            rotated_refresh_token=True,
            attempt=1,
            log_id="log-123",
        )
    finally:
        import logging

        logging.getLogger().handlers[:] = root_handlers
    return stream.getvalue()


def test_terminal_gets_one_short_line_per_refresh() -> None:
    """On a TTY (format auto) a refresh is one line under 120 characters, not JSON."""
    out = _log_one_refresh("auto", tty=True)
    lines = out.splitlines()
    assert len(lines) == 1
    assert not lines[0].startswith("{")
    assert "token.refresh success demo/demo-1 trigger=scheduled 8ms" in lines[0]
    assert len(lines[0]) < 120


@pytest.mark.parametrize(("fmt", "tty"), [("auto", False), ("json", True), ("json", False)])
def test_json_when_not_a_terminal_or_asked_for(fmt: str, tty: bool) -> None:
    """Not a TTY, or FRESHTOKEN_LOG_FORMAT=json: one JSON object per line with every field."""
    line = json.loads(_log_one_refresh(fmt, tty))
    assert line["event"] == "token.refresh" and line["log_id"] == "log-123"


def test_console_renderer_shows_errors_and_other_events() -> None:
    """Failures name the error; other events list their fields; tracebacks follow the line."""
    failed = console_renderer(
        None,
        "error",
        {
            "timestamp": "2026-11-30T05:44:18.1Z",
            "level": "error",
            "event": "token.refresh",
            "outcome": "failed",
            "provider_config_key": "demo",
            "connection_id": "c",
            "trigger": "on_read",
            "duration_ms": 3,
            "error_code": "invalid_grant",
            "error_class": "permanent",
        },
    )
    assert failed.startswith("05:44:18 error")
    assert "error=invalid_grant (permanent)" in failed
    other = console_renderer(
        None, "info", {"event": "dev.demo_ready", "connections": 5, "exception": "Trace\n  x"}
    )
    assert other.splitlines()[0].endswith("dev.demo_ready connections=5")
    assert other.splitlines()[1:] == ["Trace", "  x"]


def _read_pty(fd: int, until: bytes, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and until not in out:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_real_terminal_gets_console_lines(tmp_path: Path) -> None:
    """A real pseudo-terminal: `freshtoken db upgrade` logs console lines, not JSON."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(tmp_path)
        os.execve(sys.executable, [*CLI, "db", "upgrade"], _env())  # noqa: S606
    try:
        out = _read_pty(fd, b"database at head", 60).decode(errors="replace")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out
    lines = [x for x in out.splitlines() if x.strip()]
    assert any(" warning settings.keys_generated " in x for x in lines), out
    assert not any(x.lstrip().startswith("{") for x in lines), out


# -- item 2: bind first, banner after ------------------------------------------------------------


@pytest.mark.parametrize("command", ["dev", "api"])
def test_busy_port_is_one_line_naming_the_setting(command: str, tmp_path: Path) -> None:
    """A busy port: one line naming FRESHTOKEN_API_PORT and --port; no banner, no key printed."""
    settings = make_settings(tmp_path)
    make_runtime(settings).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            [command, "--host", "127.0.0.1", "--port", str(port)],
            tmp_path,
            FRESHTOKEN_DATABASE_URL=settings.resolved_database_url,
        )
    line = _one_line_error(result)
    assert f"port {port}" in line and "FRESHTOKEN_API_PORT" in line and "PORT=" in line
    assert "secret key" not in result.stderr


def test_banner_comes_after_the_port_is_bound(tmp_path: Path) -> None:
    """When `dev` prints its banner the API already answers; Ctrl-C then stops it cleanly."""
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "dev", "--port", str(port)],
        cwd=tmp_path,
        env=_env(FRESHTOKEN_LOG_FORMAT="json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"freshtoken is running at" not in seen and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert f"http://127.0.0.1:{port}".encode() in seen, seen[-2000:]
        # The socket was bound before the banner: connecting cannot be refused now.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        deadline = time.monotonic() + 20
        while True:  # the app itself starts right after the banner
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout is not None and proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# -- item 12: make run installs what running needs -----------------------------------------------


def _make_dry_run(target: str, tmp_path: Path, *args: str) -> str:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        ["make", "-n", "-C", str(root), target, f"VENV={tmp_path / 'venv'}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_installs_runtime_only_and_takes_a_port(tmp_path: Path) -> None:
    """`make run` installs without the test extras; `make run PORT=3010` passes --port 3010."""
    run = _make_dry_run("run", tmp_path, "PORT=3010")
    assert "pip install -q -e ." in run and "[test]" not in run
    assert "freshtoken dev --port 3010" in run
    assert "--port" not in _make_dry_run("run", tmp_path)
    for target in ("test", "lint"):
        assert "pip install -q -e '.[test]'" in _make_dry_run(target, tmp_path)


def test_mock_provider_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    """`freshtoken mock-provider --port N` on a taken port: one line naming --port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(["mock-provider", "--port", str(port)], tmp_path)
    line = _one_line_error(result)
    assert f"port {port}" in line and "--port" in line


def test_a_leading_freshtoken_is_accepted_as_in_the_container() -> None:
    """`docker compose run --rm api freshtoken keys generate` runs `freshtoken freshtoken ...`."""
    from click.testing import CliRunner

    from freshtoken.cli import main

    result = CliRunner().invoke(main, ["freshtoken", "keys", "generate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("FRESHTOKEN_ENCRYPTION_KEY=")
