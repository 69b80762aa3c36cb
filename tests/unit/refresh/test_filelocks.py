"""Without Redis, locks hold across processes on one machine (issue 10, row 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import (
    ENCRYPTION_KEY,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
)

from freshtoken.errors import ConfigError
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh.filelocks import FileLocks, local_lock_dir
from freshtoken.runtime import build_runtime

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from freshtoken.refresh.filelocks import FileLocks
    lease = FileLocks(Path(sys.argv[1])).acquire("refresh:1", 30, 5)
    assert lease is not None
    Path(sys.argv[2]).write_text("held")
    time.sleep(float(sys.argv[3]))
    lease.release()
    """
)


def _hold(lock_dir: Path, flag: Path, seconds: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), str(flag), str(seconds)])
    deadline = time.monotonic() + 20
    while not flag.exists():
        assert proc.poll() is None, "holder exited early"
        assert time.monotonic() < deadline, "holder never took the lock"
        time.sleep(0.02)
    return proc


def test_a_lock_held_by_another_process_excludes_this_one(tmp_path: Path) -> None:
    """While another process holds refresh:1, this process cannot take it; after, it can."""
    locks = FileLocks(tmp_path / "locks")
    holder = _hold(tmp_path / "locks", tmp_path / "flag", 1.0)
    try:
        assert locks.acquire("refresh:1", 30, 0.2) is None
        other = locks.acquire("refresh:2", 30, 0.2)  # another connection is not blocked
        assert other is not None and other.release()
        lease = locks.acquire("refresh:1", 30, 10)
        assert lease is not None
        assert holder.wait(5) == 0
        lease.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_releases_its_lock(tmp_path: Path) -> None:
    """The kernel drops the lock of a process killed while holding it (no TTL needed)."""
    holder = _hold(tmp_path / "locks", tmp_path / "flag", 60)
    locks = FileLocks(tmp_path / "locks")
    assert locks.acquire("refresh:1", 30, 0.1) is None
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lease = locks.acquire("refresh:1", 30, 2)
    assert lease is not None
    lease.release()


def test_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    """Two threads taking the same lock never hold it at the same time."""
    locks = FileLocks(tmp_path / "locks")
    inside = 0
    overlap = False
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, overlap
        for _ in range(20):
            lease = locks.acquire("refresh:7", 30, 10)
            assert lease is not None
            with guard:
                inside += 1
                overlap = overlap or inside > 1
            time.sleep(0.002)
            with guard:
                inside -= 1
            lease.release()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap


@pytest.fixture
def slow_provider() -> Iterator[MockProvider]:
    """A mock provider with rotation and reuse detection, 0.5 s per token call."""
    with MockProvider(MockProviderConfig(latency_seconds=0.5)) as provider:
        yield provider


def test_five_concurrent_cli_refreshes_never_spend_a_refresh_token_twice(
    tmp_path: Path, slow_provider: MockProvider
) -> None:
    """Five `freshtoken refresh` processes on one SQLite file, no Redis: the refreshes are
    serialised, the provider sees no reuse and the family stays alive (was revoked)."""
    settings = make_settings(tmp_path)
    rt = make_runtime(settings)
    try:
        _, family = add_oauth2_connection(rt, slow_provider, connection_id="c1")
    finally:
        rt.close()
    env = {
        **os.environ,
        "FRESHTOKEN_DATABASE_URL": settings.resolved_database_url,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_LOG_LEVEL": "WARNING",
        "FRESHTOKEN_REDIS_URL": "",
        "FRESHTOKEN_LOCK_WAIT_SECONDS": "20",
        "FRESHTOKEN_LOCK_TTL_SECONDS": "30",
    }
    env.pop("FRESHTOKEN_ENV", None)
    cmd = [sys.executable, "-c", "from freshtoken.cli import main; main()", "refresh", "mock", "c1"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(5)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    stats = slow_provider.stats()
    assert stats["reuse_detected"] == 0, outputs
    assert stats["families_revoked"] == 0
    assert codes == [0] * 5, outputs
    assert slow_provider.current_refresh_token(family["refresh_token"]) is not None


def test_production_on_a_server_database_without_redis_refuses_to_start(tmp_path: Path) -> None:
    """Several hosts cannot share file locks: production on PostgreSQL without Redis refuses,
    unless FRESHTOKEN_SINGLE_HOST=true; SQLite (one machine by nature) is fine."""
    pg = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    refused = make_settings(tmp_path, env="production", database_url=pg, redis_url=None)
    with pytest.raises(ConfigError, match="FRESHTOKEN_REDIS_URL"):
        build_runtime(refused)
    single = make_settings(
        tmp_path, env="production", database_url=pg, redis_url=None, single_host=True
    )
    assert local_lock_dir(single) == tmp_path / "locks"
    sqlite = make_settings(tmp_path, env="production", redis_url=None)
    assert local_lock_dir(sqlite) == tmp_path / "test.db.locks"
