"""Under the lock, a refresh token another caller just had rejected is not sent again (#16)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh.locks import LocalLocks
from freshtoken.refresh.seam import RefreshDenied, Refusal
from freshtoken.refresh.service import RefreshService
from freshtoken.runtime import Runtime


@pytest.fixture
def slow_provider() -> Iterator[MockProvider]:
    """A mock provider that answers slowly, so the second caller is waiting on the lock."""
    with MockProvider(MockProviderConfig(token_lifetime_seconds=3600)) as mock:
        mock.configure(latency_seconds=0.3)
        yield mock


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """Two refresh services (two API processes) on one database, sharing one lock table."""
    settings = make_settings(tmp_path)
    rt_a, rt_b = make_runtime(settings), make_runtime(settings)
    locks = LocalLocks()
    _service(rt_a).locks = locks
    _service(rt_b).locks = locks
    yield rt_a, rt_b
    rt_a.close()
    rt_b.close()


def _service(rt: Runtime) -> RefreshService:
    service = rt.require_refresh_service()
    return service


def _read(rt: Runtime, pk: int) -> tuple[Any, dict[str, Any]]:
    with rt.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        return conn, store.credentials(conn)


@pytest.mark.parametrize("force", [False, True], ids=["on_read", "forced"])
def test_second_caller_does_not_resend_a_rejected_refresh_token(
    two_processes: tuple[Runtime, Runtime], slow_provider: MockProvider, force: bool
) -> None:
    """Two processes read one expired connection at once and the provider rejects the refresh:
    exactly one token-endpoint call is made; the caller that waited on the lock gets the refusal
    later reads get (needs_reauth, the API's 424), without spending the rejected token a second
    time."""
    rt_a, rt_b = two_processes
    pk, _ = add_oauth2_connection(rt_a, slow_provider, expires_in=-1)
    slow_provider.inject("invalid_grant", count=2)
    conn, creds = _read(rt_a, pk)
    denials: list[RefreshDenied] = []
    others: list[BaseException] = []
    barrier = threading.Barrier(2)

    def reader(rt: Runtime) -> None:
        barrier.wait()
        try:
            _service(rt).refresh_for_read(conn, creds, force=force)
        except RefreshDenied as denied:
            denials.append(denied)
        except BaseException as exc:  # surfaced by the assertion below
            others.append(exc)

    threads = [threading.Thread(target=reader, args=(rt,)) for rt in (rt_a, rt_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not others
    assert slow_provider.stats()["token_calls"] == 1
    assert sorted(d.reason for d in denials) == [Refusal.NEEDS_REAUTH, Refusal.PROVIDER_REJECTED]
    marked, _ = _read(rt_a, pk)
    assert marked.needs_reauth
    # The waiter's refusal points at the log line of the refresh that was actually rejected.
    (waiter,) = [d for d in denials if d.reason is Refusal.NEEDS_REAUTH]
    assert waiter.log_id == marked.auth_error_log_id


def test_forced_refresh_decided_after_the_mark_still_tries(
    two_processes: tuple[Runtime, Runtime], slow_provider: MockProvider
) -> None:
    """A forced refresh asked for after the connection was marked may revive it (one call)."""
    rt_a, _ = two_processes
    pk, _ = add_oauth2_connection(rt_a, slow_provider, expires_in=-1)
    slow_provider.inject("invalid_grant")
    conn, creds = _read(rt_a, pk)
    with pytest.raises(RefreshDenied):
        _service(rt_a).refresh_for_read(conn, creds, force=False)
    conn, creds = _read(rt_a, pk)
    revived, _ = _service(rt_a).refresh_for_read(conn, creds, force=True)
    assert not revived.needs_reauth
    assert slow_provider.stats()["token_calls"] == 2
