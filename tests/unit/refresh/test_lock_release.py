"""The refresh lock is released on every path out of the locked section (issue #16, row 2/5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.lock
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.mockprovider import MockProvider
from freshtoken.refresh.filelocks import FileLocks
from freshtoken.refresh.locks import LocalLocks, RedisLocks
from freshtoken.refresh.service import RefreshService
from freshtoken.runtime import Runtime
from freshtoken.store.repository import ConnectionStore


@pytest.fixture
def file_lock_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A SQLite runtime without Redis: OS file locks (a release really unlocks the file).

    A short lock TTL keeps the write's retries through a database outage short.
    """
    settings = make_settings(
        tmp_path, lock_ttl_seconds=4, http_connect_timeout=0.5, http_read_timeout=1
    )
    rt = make_runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def redis_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A SQLite runtime whose locks go through redis-py's ``Lock`` (on a fake Redis)."""
    rt = make_runtime(make_settings(tmp_path), redis_client=fakeredis.FakeRedis())
    assert isinstance(_service(rt).locks, RedisLocks)
    yield rt
    rt.close()


def _service(rt: Runtime) -> RefreshService:
    service = rt.require_refresh_service()
    return service


def _lock_is_free(rt: Runtime, pk: int) -> bool:
    locks = _service(rt).locks
    # Without Redis the service takes OS file locks; a second open of the lock file excludes
    # like another process would, so a leaked lock shows as "not free" here.
    assert isinstance(locks, FileLocks | LocalLocks)
    lease = locks.acquire(f"refresh:{pk}", 5.0, 0.0)
    if lease is None:
        return False
    lease.release()
    return True


def _database_down(*_args: object, **_kwargs: object) -> Any:
    raise OperationalError("SELECT connections", {}, Exception("server closed the connection"))


def _boom(*_args: object, **_kwargs: object) -> Any:
    raise RuntimeError("step failed")


async def _aboom(*_args: object, **_kwargs: object) -> Any:
    raise RuntimeError("provider call failed")


STEPS = ["database_read", "provider", "encryption", "stash", "database_write"]


@pytest.mark.parametrize("step", STEPS)
def test_lock_is_released_when_a_step_fails(
    file_lock_runtime: Runtime,
    mock_provider: MockProvider,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """Whichever step of the locked section raises, the connection's lock is free afterwards.

    Before the fix a database error on the row read under the lock left the lock held for its
    whole TTL (reads after PostgreSQL returned waited 10-20 s).
    """
    service = _service(file_lock_runtime)
    pk, _ = add_oauth2_connection(file_lock_runtime, mock_provider, expires_in=-1)
    if step == "database_read":
        monkeypatch.setattr(ConnectionStore, "get_connection_by_pk", _database_down)
    elif step == "provider":
        monkeypatch.setattr(service, "_send_grant", _aboom)
    elif step == "encryption":
        monkeypatch.setattr(service.cipher, "encrypt_json", _boom)
    elif step == "stash":
        monkeypatch.setattr(service.pending, "put", _boom)
    else:
        monkeypatch.setattr(ConnectionStore, "cas_write_refresh", _database_down)
    with pytest.raises((OperationalError, RuntimeError)):
        service.refresh(pk, trigger="manual", force=True)
    monkeypatch.undo()
    assert _lock_is_free(file_lock_runtime, pk)


def test_release_with_redis_unreachable_is_not_reported_as_expired(
    redis_runtime: Runtime, mock_provider: MockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis failing at release logs ``refresh.lock.release_failed``, never ``lock.expired``."""

    def unreachable(_self: object) -> None:
        raise RedisConnectionError("Connection refused")

    pk, _ = add_oauth2_connection(redis_runtime, mock_provider, expires_in=-1)
    monkeypatch.setattr(redis.lock.Lock, "release", unreachable)
    with capture_logs() as logs:
        result = _service(redis_runtime).refresh(pk, trigger="manual", force=True)
    assert result.outcome == "success"  # the refresh itself is stored
    events = [e["event"] for e in logs]
    assert "refresh.lock.expired" not in events
    (failed,) = [e for e in logs if e["event"] == "refresh.lock.release_failed"]
    assert failed["reason"] == "lock_service_unavailable"
    assert failed["connection_pk"] == pk


def test_expired_lease_is_still_reported_as_expired(
    redis_runtime: Runtime, mock_provider: MockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease that Redis says we no longer own is ``refresh.lock.expired`` (unchanged)."""
    from redis.exceptions import LockNotOwnedError

    def not_owned(_self: object) -> None:
        raise LockNotOwnedError("not owned")

    pk, _ = add_oauth2_connection(redis_runtime, mock_provider, expires_in=-1)
    monkeypatch.setattr(redis.lock.Lock, "release", not_owned)
    with capture_logs() as logs:
        _service(redis_runtime).refresh(pk, trigger="manual", force=True)
    events = [e["event"] for e in logs]
    assert "refresh.lock.expired" in events
    assert "refresh.lock.release_failed" not in events
