"""The refresh service on SQLite against the real HTTP mock provider."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from structlog.testing import capture_logs
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh.locks import LocalLocks, RedisLocks
from freshtoken.refresh.seam import RefreshDenied, Refusal
from freshtoken.refresh.service import RefreshService
from freshtoken.runtime import Runtime
from freshtoken.store.credentials import parse_datetime

LOG_FIELDS = {
    "connection_id",
    "provider_config_key",
    "provider",
    "trigger",
    "outcome",
    "error_code",
    "error_class",
    "http_status",
    "duration_ms",
    "lock_wait_ms",
    "seconds_to_expiry",
    "new_expires_at",
    "rotated_refresh_token",
    "attempt",
    "log_id",
}


def _service(rt: Runtime) -> RefreshService:
    service = rt.require_refresh_service()
    return service


def _read(rt: Runtime, pk: int) -> tuple[Any, dict[str, Any]]:
    with rt.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        return conn, store.credentials(conn)


def _refresh_events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "token.refresh"]


def test_expired_token_is_refreshed_on_read(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """A read of an expired token refreshes once, rotates, stores and logs one success line."""
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-10)
    conn, creds = _read(refresh_runtime, pk)
    with capture_logs() as logs:
        new_conn, new_creds = _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert new_creds["access_token"] != family["access_token"]
    assert mock_provider.is_access_token_valid(new_creds["access_token"])
    assert new_creds["refresh_token"] == mock_provider.current_refresh_token(
        family["refresh_token"]
    )
    assert new_conn.version == conn.version + 1
    assert new_conn.expires_at is not None and new_conn.expires_at > refresh_runtime.clock.now()
    assert mock_provider.stats()["refresh_calls"] == 1
    (event,) = _refresh_events(logs)
    assert set(event) >= LOG_FIELDS
    assert event["outcome"] == "success"
    assert event["trigger"] == "on_read"
    assert event["rotated_refresh_token"] is True
    assert event["seconds_to_expiry"] < 0
    assert _read(refresh_runtime, pk)[1]["access_token"] == new_creds["access_token"]


def test_fresh_token_is_served_without_a_provider_call(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """A token far from expiry is returned as stored; the provider is not called."""
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider)
    conn, creds = _read(refresh_runtime, pk)
    _, served = _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert served["access_token"] == family["access_token"]
    assert mock_provider.stats()["token_calls"] == 0


def test_force_refresh_refreshes_a_fresh_token(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """force_refresh calls the provider even when the token is fresh (trigger=forced)."""
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider)
    conn, creds = _read(refresh_runtime, pk)
    with capture_logs() as logs:
        _, served = _service(refresh_runtime).refresh_for_read(conn, creds, force=True)
    assert served["access_token"] != family["access_token"]
    assert _refresh_events(logs)[0]["trigger"] == "forced"


def test_token_inside_read_margin_is_refreshed(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """An hour token with 10 minutes left is inside the 15-minute read margin and refreshes."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=600)
    conn, creds = _read(refresh_runtime, pk)
    _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert mock_provider.stats()["refresh_calls"] == 1


def test_concurrent_readers_in_one_process_share_one_refresh(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """50 threads reading one expired connection cause one provider call and all get its token."""
    mock_provider.configure(latency_seconds=0.3)
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    conn, creds = _read(refresh_runtime, pk)
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def reader() -> None:
        try:
            barrier.wait()
            _, served = _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
            results.append(served["access_token"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert mock_provider.stats()["refresh_calls"] == 1
    assert mock_provider.stats()["invalid_grant"] == 0
    assert len(set(results)) == 1 and len(results) == 50


def test_two_services_sharing_a_redis_lock_refresh_once(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """Two refresh services (two 'processes') behind one Redis lock spend the token once."""
    server = fakeredis.FakeServer()
    settings = make_settings(tmp_path)
    rt_a = make_runtime(settings, redis_client=fakeredis.FakeRedis(server=server))
    rt_b = make_runtime(settings, redis_client=fakeredis.FakeRedis(server=server))
    assert isinstance(_service(rt_a).locks, RedisLocks)
    mock_provider.configure(latency_seconds=0.2)
    pk, _ = add_oauth2_connection(rt_a, mock_provider, expires_in=-1)
    conn, creds = _read(rt_a, pk)
    tokens: list[str] = []
    barrier = threading.Barrier(20)

    def reader(rt: Runtime) -> None:
        barrier.wait()
        tokens.append(_service(rt).refresh_for_read(conn, creds, force=False)[1]["access_token"])

    threads = [threading.Thread(target=reader, args=(rt_a if i % 2 else rt_b,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mock_provider.stats()["refresh_calls"] == 1
    assert mock_provider.stats()["invalid_grant"] == 0
    assert len(tokens) == 20 and len(set(tokens)) == 1


def test_stalled_holder_is_fenced(tmp_path: Path) -> None:
    """A holder stalled past its lock TTL loses the compare-and-set; the newer token stays."""
    settings = make_settings(
        tmp_path,
        lock_ttl_seconds=1.0,
        lock_wait_seconds=5.0,
        http_connect_timeout=0.2,
        http_read_timeout=0.5,
    )
    locks = LocalLocks()
    rt_a = make_runtime(settings)
    rt_b = make_runtime(settings)
    _service(rt_a).locks = locks
    _service(rt_b).locks = locks
    # Grace lets the second refresher's (stale) refresh token through, as Xero/Atlassian do.
    with MockProvider(MockProviderConfig(grace_seconds=30)) as mock_provider:
        pk, _ = add_oauth2_connection(rt_a, mock_provider)
        stall = threading.Event()
        _service(rt_a).before_write = lambda _pk: stall.wait(5)
        outcome: dict[str, Any] = {}

        def holder() -> None:
            outcome["a"] = _service(rt_a).refresh(pk, trigger="manual", force=True)

        with capture_logs() as logs:
            t = threading.Thread(target=holder)
            t.start()
            # Wait until A has its tokens and is stalled, then let its lease expire.
            for _ in range(100):
                if mock_provider.stats()["refresh_calls"] == 1:
                    break
                threading.Event().wait(0.05)
            threading.Event().wait(1.2)
            result_b = _service(rt_b).refresh(pk, trigger="manual", force=True)
            stall.set()
            t.join()
        assert result_b.outcome == "success"
        assert outcome["a"].outcome == "fenced"
        _, stored = _read(rt_a, pk)
        assert stored["access_token"] == result_b.credentials["access_token"]
        outcomes = [e["outcome"] for e in _refresh_events(logs)]
        assert sorted(outcomes) == ["fenced", "success"]


def test_invalid_grant_marks_reauth_and_later_reads_get_424(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """A rejected refresh is refused as provider_rejected once (the API's 400), then as
    needs_reauth (424) without calling the provider again."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    mock_provider.inject("invalid_grant")
    conn, creds = _read(refresh_runtime, pk)
    with capture_logs() as logs, pytest.raises(RefreshDenied) as first:
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert first.value.reason is Refusal.PROVIDER_REJECTED
    assert first.value.log_id
    (event,) = _refresh_events(logs)
    assert (event["outcome"], event["error_class"], event["error_code"]) == (
        "failed",
        "permanent",
        "invalid_grant",
    )
    assert event["log_level"] == "error"
    conn, creds = _read(refresh_runtime, pk)
    assert conn.needs_reauth and conn.auth_error_log_id == first.value.log_id
    calls = mock_provider.stats()["token_calls"]
    with pytest.raises(RefreshDenied) as second:
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert second.value.reason is Refusal.NEEDS_REAUTH
    assert mock_provider.stats()["token_calls"] == calls


def test_forced_refresh_revives_a_connection(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """After a permanent failure, a forced refresh that succeeds clears the re-auth flag."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    mock_provider.inject("invalid_grant")
    conn, creds = _read(refresh_runtime, pk)
    with pytest.raises(RefreshDenied):
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    conn, creds = _read(refresh_runtime, pk)
    new_conn, _ = _service(refresh_runtime).refresh_for_read(conn, creds, force=True)
    assert not new_conn.needs_reauth and new_conn.last_refresh_failure is None


def test_transient_failure_serves_a_still_valid_token(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """A 500 while the token is still valid (inside the margin) returns the stored token."""
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=300)
    mock_provider.inject("500")
    conn, creds = _read(refresh_runtime, pk)
    with capture_logs() as logs:
        _, served = _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert served["access_token"] == family["access_token"]
    (event,) = _refresh_events(logs)
    assert (event["outcome"], event["error_class"], event["http_status"]) == (
        "failed",
        "transient",
        500,
    )
    conn, _ = _read(refresh_runtime, pk)
    assert not conn.needs_reauth and conn.refresh_attempts == 1


def test_transient_failure_with_expired_token_is_400_then_next_read_retries(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """An expired token whose refresh fails transiently is refused as failed (the API's 400); a
    read inside the 2 s retry backoff is refused as cooldown (424) with no provider call; past
    it, a read inside the 30 s cooldown refreshes once more rather than refusing (the provider
    may be healthy again)."""
    settings = refresh_runtime.settings
    assert settings.http_read_timeout >= 1
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    mock_provider.inject("503", count=2)
    conn, creds = _read(refresh_runtime, pk)
    with pytest.raises(RefreshDenied) as first:
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert first.value.reason is Refusal.FAILED
    conn, creds = _read(refresh_runtime, pk)
    calls = mock_provider.stats()["token_calls"]
    with pytest.raises(RefreshDenied) as backing_off:
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert backing_off.value.reason is Refusal.COOLDOWN
    assert mock_provider.stats()["token_calls"] == calls
    time.sleep(2.1)  # past the retry backoff (real clock)
    with pytest.raises(RefreshDenied) as second:
        _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert second.value.reason is Refusal.FAILED
    assert mock_provider.stats()["token_calls"] == calls + 1
    # force_refresh works as before.
    _, served = _service(refresh_runtime).refresh_for_read(conn, creds, force=True)
    assert mock_provider.is_access_token_valid(served["access_token"])


def test_exhausted_after_four_failing_days(tmp_path: Path, mock_provider: MockProvider) -> None:
    """Failures count once a day; the fourth failing day exhausts the connection (refused as
    exhausted, the API's 424)."""
    clock = FakeClock(dt.datetime.now(dt.UTC))
    rt = make_runtime(make_settings(tmp_path), clock=clock)
    pk, _ = add_oauth2_connection(rt, mock_provider, expires_in=-1)
    for day in range(4):
        for _ in range(3):  # several failures a day count once
            mock_provider.inject("500")
            conn, creds = _read(rt, pk)
            with pytest.raises(RefreshDenied):
                _service(rt).refresh_for_read(conn, creds, force=True)
            clock.advance(60)
        conn, _ = _read(rt, pk)
        assert conn.refresh_attempts == day + 1
        assert conn.refresh_exhausted is (day == 3)
        clock.advance(24 * 3600)
    conn, creds = _read(rt, pk)
    calls = mock_provider.stats()["token_calls"]
    with pytest.raises(RefreshDenied) as denied:
        _service(rt).refresh_for_read(conn, creds, force=False)
    assert denied.value.reason is Refusal.EXHAUSTED
    assert mock_provider.stats()["token_calls"] == calls


def test_rate_limit_is_transient_with_retry_after(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """A 429 is classified transient with error_code rate_limited."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    mock_provider.inject("429", retry_after=7)
    result = _service(refresh_runtime).refresh(pk, trigger="manual", force=True)
    assert result.error is not None
    assert (result.error.error_class, result.error.error_code, result.error.retry_after) == (
        "transient",
        "rate_limited",
        7.0,
    )


def test_timeout_is_transient(tmp_path: Path, mock_provider: MockProvider) -> None:
    """A provider that never answers is a transient 'timeout' after the read timeout."""
    rt = make_runtime(
        make_settings(tmp_path, http_read_timeout=0.3, http_connect_timeout=0.3, lock_ttl_seconds=2)
    )
    pk, _ = add_oauth2_connection(rt, mock_provider, expires_in=-1)
    mock_provider.inject("timeout")
    result = _service(rt).refresh(pk, trigger="manual", force=True)
    assert result.error is not None
    assert (result.error.error_class, result.error.error_code) == ("transient", "timeout")


def test_unknown_expiry_gets_default_lifetime_from_send_time(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """A response without expires_in expires after the default lifetime, counted from sending."""
    mock_provider.configure(omit_expires_in=True)
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    before = dt.datetime.now(dt.UTC)
    result = _service(refresh_runtime).refresh(pk, trigger="manual", force=True)
    expires = parse_datetime(result.credentials["expires_at"])
    assert expires is not None
    lifetime = (expires - before).total_seconds()
    assert 3599 <= lifetime <= 3601


def test_string_expires_in_and_kept_refresh_token(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """expires_in as a string is parsed; a response without a refresh token keeps the old one."""
    mock_provider.configure(expires_in_as_string=True, omit_refresh_token_in_response=True)
    pk, family = add_oauth2_connection(refresh_runtime, mock_provider, expires_in=-1)
    result = _service(refresh_runtime).refresh(pk, trigger="manual", force=True)
    assert result.credentials["refresh_token"] == family["refresh_token"]
    assert result.credentials["raw"]["expires_in"] == "3600"
    assert "refresh_token" not in result.credentials["raw"]


def test_import_without_expiry_is_refreshed(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """An OAUTH2 connection imported with a refresh token but no expiry is refreshed on read."""
    pk, _ = add_oauth2_connection(refresh_runtime, mock_provider)
    with refresh_runtime.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        creds = store.credentials(conn)
        creds.pop("expires_at")
        store.set_credentials(conn, creds)
    conn, creds = _read(refresh_runtime, pk)
    assert conn.expires_at is None
    new_conn, _ = _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert new_conn.expires_at is not None


def test_lock_timeout_serves_the_fresh_token_and_never_refreshes(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """A caller timing out on the lock re-reads; it never calls the provider without the lock."""
    rt = make_runtime(make_settings(tmp_path, lock_wait_seconds=0.3))
    service = _service(rt)
    pk, _ = add_oauth2_connection(rt, mock_provider, expires_in=-1)
    held = service.locks.acquire(f"refresh:{pk}", 30, 0)
    assert held is not None
    conn, creds = _read(rt, pk)
    with capture_logs() as logs, pytest.raises(RefreshDenied) as denied:
        service.refresh_for_read(conn, creds, force=False)
    assert denied.value.reason is Refusal.LOCK_TIMEOUT
    assert mock_provider.stats()["token_calls"] == 0
    (event,) = _refresh_events(logs)
    assert event["outcome"] == "lock_timeout"
    assert event["lock_wait_ms"] >= 250
    # Meanwhile the holder refreshed: a timed-out caller now gets the holder's fresh token.
    with rt.store() as store:
        row = store.get_connection_by_pk(pk)
        assert row is not None
        fresh = dict(store.credentials(row), expires_at="2999-01-01T00:00:00.000Z")
        store.set_credentials(row, fresh)
    result = service.refresh(pk, trigger="on_read")
    assert result.outcome == "lock_timeout" and result.ok
    assert result.credentials["expires_at"] == "2999-01-01T00:00:00.000Z"
    assert mock_provider.stats()["token_calls"] == 0
    held.release()


def test_client_credentials_connection_is_refreshed(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """An OAUTH2_CC connection re-runs the client-credentials grant with its own client."""
    with refresh_runtime.store() as store:
        integration = store.create_integration(unique_key="cc", provider="oauth2-cc")
        conn, _ = store.upsert_connection(
            integration,
            connection_id="cc-1",
            credentials={
                "type": "OAUTH2_CC",
                "token": "old-cc-token",
                "client_id": mock_provider.config.client_id,
                "client_secret": mock_provider.config.client_secret,
                "expires_at": "2000-01-01T00:00:00.000Z",
            },
            connection_config={"token_url": mock_provider.token_url},
        )
        pk = conn.id
    conn, creds = _read(refresh_runtime, pk)
    _, served = _service(refresh_runtime).refresh_for_read(conn, creds, force=False)
    assert served["token"] != "old-cc-token"
    assert mock_provider.is_access_token_valid(served["token"])
    assert served["client_secret"] == mock_provider.config.client_secret
    assert mock_provider.stats()["client_credentials_calls"] == 1


def test_failed_write_does_not_strand_a_rotated_token(
    tmp_path: Path, mock_provider: MockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the database write fails after the provider rotated the token, the next attempt writes
    the stashed tokens instead of replaying the spent refresh token (no invalid_grant)."""
    from sqlalchemy.exc import OperationalError

    from freshtoken.store.repository import ConnectionStore

    rt = make_runtime(
        make_settings(tmp_path, lock_ttl_seconds=4, http_connect_timeout=0.5, http_read_timeout=1)
    )
    service = _service(rt)
    pk, family = add_oauth2_connection(rt, mock_provider, expires_in=-1)
    original = ConnectionStore.cas_write_refresh

    def database_down(*_args: object, **_kwargs: object) -> bool:
        raise OperationalError("UPDATE connections", {}, Exception("server closed the connection"))

    monkeypatch.setattr(ConnectionStore, "cas_write_refresh", database_down)
    with capture_logs() as logs, pytest.raises(OperationalError):
        service.refresh(pk, trigger="manual", force=True)
    (event,) = _refresh_events(logs)
    assert (event["outcome"], event["error_code"]) == ("failed", "store_unavailable")
    assert mock_provider.stats()["refresh_calls"] == 1
    live_rt = mock_provider.current_refresh_token(family["refresh_token"])
    assert live_rt != family["refresh_token"]  # the stored refresh token is now spent
    monkeypatch.setattr(ConnectionStore, "cas_write_refresh", original)
    result = service.refresh(pk, trigger="on_read")
    assert result.outcome == "success"
    assert result.credentials["refresh_token"] == live_rt
    assert mock_provider.stats()["invalid_grant"] == 0
    assert mock_provider.stats()["refresh_calls"] == 1  # the stash was written, no provider call
    assert mock_provider.is_access_token_valid(result.credentials["access_token"])
    # And the recovered refresh token is the live one: the next refresh works.
    again = service.refresh(pk, trigger="manual", force=True)
    assert again.outcome == "success" and mock_provider.stats()["invalid_grant"] == 0
    assert service.pending.get(pk) is None


def test_unrefreshable_connection_is_not_marked(
    refresh_runtime: Runtime, mock_provider: MockProvider
) -> None:
    """A forced refresh of an API key connection fails as not_refreshable and records nothing."""
    with refresh_runtime.store() as store:
        integration = store.create_integration(unique_key="keys", provider="api-key")
        conn, _ = store.upsert_connection(
            integration, connection_id="k1", credentials={"type": "API_KEY", "apiKey": "k-123"}
        )
        pk = conn.id
    result = _service(refresh_runtime).refresh(pk, trigger="manual", force=True)
    assert result.error is not None and result.error.error_code == "not_refreshable"
    conn, _ = _read(refresh_runtime, pk)
    assert not conn.needs_reauth and conn.last_refresh_failure is None
    assert mock_provider.stats()["token_calls"] == 0
