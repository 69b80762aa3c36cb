"""A refresh whose answer was lost (killed worker, client timeout after the provider rotated).

Without a provider reuse grace the first ``invalid_grant`` after such a refresh marks the
connection as needing re-authorisation with ``refresh_token_lost_in_flight`` (one provider call,
no second spender). With ``refresh_token_reuse_grace_seconds`` in the catalog, freshtoken asks
once more with the old refresh token inside the grace and recovers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from structlog.testing import capture_logs
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh.inflight import (
    LOST_IN_FLIGHT,
    Mark,
    RedisInFlightMarks,
    reuse_grace_seconds,
)
from freshtoken.refresh.service import RefreshResult, RefreshService
from freshtoken.runtime import Runtime

GRACE_PROVIDERS = """
oauth2-grace:
    display_name: OAuth 2.0 with a refresh token reuse grace
    auth_mode: OAUTH2
    token_url: ${connectionConfig.token_url}
    refresh_token_reuse_grace_seconds: 30
"""


def _service(rt: Runtime) -> RefreshService:
    service = rt.require_refresh_service()
    return service


def _events(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "token.refresh"]


@pytest.fixture
def grace_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """SQLite, a 1 s client read timeout, and a catalog with a provider that has a grace."""
    providers = tmp_path / "providers.yaml"
    providers.write_text(GRACE_PROVIDERS)
    settings = make_settings(
        tmp_path,
        http_connect_timeout=0.5,
        http_read_timeout=1.0,
        providers_file=providers,
        redis_url=None,
    )
    rt = make_runtime(settings)
    yield rt
    rt.close()


def _refresh_losing_the_answer(
    rt: Runtime, provider: MockProvider, pk: int
) -> tuple[RefreshResult, list[MutableMapping[str, Any]]]:
    """One refresh whose provider rotates the token but answers after the client gave up; the
    latency is removed as soon as the provider saw the request (later calls are fast)."""
    provider.configure(latency_seconds=2.5)
    calls = provider.stats()["token_calls"]

    def speed_up() -> None:
        deadline = time.monotonic() + 5
        while provider.stats()["token_calls"] == calls and time.monotonic() < deadline:
            time.sleep(0.01)
        provider.configure(latency_seconds=0.0)

    helper = threading.Thread(target=speed_up)
    helper.start()
    with capture_logs() as logs:
        result = _service(rt).refresh(pk, trigger="manual", force=True)
    helper.join()
    return result, logs


def test_first_invalid_grant_after_a_lost_answer_is_lost_in_flight(grace_runtime: Runtime) -> None:
    """No grace anywhere: the timed-out refresh leaves its mark; the next attempt makes exactly
    one provider call, gets invalid_grant, and marks the connection ``lost_in_flight``."""
    with MockProvider(MockProviderConfig(reuse_detection=True)) as provider:
        pk, _ = add_oauth2_connection(grace_runtime, provider, expires_in=-1)
        first, _ = _refresh_losing_the_answer(grace_runtime, provider, pk)
        assert (first.outcome, first.error and first.error.error_code) == ("failed", "timeout")
        assert _service(grace_runtime).inflight.get(pk) is not None
        calls = provider.stats()["token_calls"]
        with capture_logs() as logs:
            second = _service(grace_runtime).refresh(pk, trigger="on_read")
        assert provider.stats()["token_calls"] == calls + 1
        assert second.error is not None and second.error.error_code == LOST_IN_FLIGHT
        (event,) = _events(logs)
        assert (event["error_code"], event["error_class"]) == (LOST_IN_FLIGHT, "permanent")
        with grace_runtime.store() as store:
            row = store.get_connection_by_pk(pk)
            assert row is not None
            assert row.needs_reauth and row.last_refresh_error == LOST_IN_FLIGHT
        assert _service(grace_runtime).inflight.get(pk) is None
        # Nobody spends the dead token again: later reads and tasks stop before the provider.
        again = _service(grace_runtime).refresh(pk, trigger="scheduled")
        assert again.outcome == "failed"
        assert provider.stats()["token_calls"] == calls + 1


def test_plain_invalid_grant_keeps_its_code(grace_runtime: Runtime) -> None:
    """Without an unrecorded earlier refresh, a rejection is ``invalid_grant`` as before."""
    with MockProvider(MockProviderConfig()) as provider:
        pk, _ = add_oauth2_connection(grace_runtime, provider, expires_in=-1)
        provider.inject("invalid_grant")
        result = _service(grace_runtime).refresh(pk, trigger="on_read")
        assert result.error is not None and result.error.error_code == "invalid_grant"


def test_catalog_grace_retries_once_with_the_old_refresh_token(grace_runtime: Runtime) -> None:
    """A provider with a 30 s reuse grace (in the catalog and at the provider): the lost answer
    is asked for again at once with the same refresh token, which the provider accepts."""
    assert reuse_grace_seconds(grace_runtime.catalog.get("oauth2-grace")) == 30.0
    assert reuse_grace_seconds(grace_runtime.catalog.get("oauth2")) == 0.0
    with MockProvider(MockProviderConfig(grace_seconds=30)) as provider:
        pk, family = add_oauth2_connection(
            grace_runtime,
            provider,
            expires_in=-1,
            provider_name="oauth2-grace",
            integration_key="g",
        )
        result, logs = _refresh_losing_the_answer(grace_runtime, provider, pk)
        assert result.outcome == "success"
        assert provider.stats()["grace_accepted"] == 1
        assert provider.stats()["calls_by_refresh_token"] == {family["refresh_token"]: 2}
        assert provider.is_access_token_valid(result.credentials["access_token"])
        assert [e["event"] for e in logs].count("refresh.grace.retry") == 1
        assert _service(grace_runtime).inflight.get(pk) is None


def test_without_catalog_grace_the_next_attempt_recovers_inside_the_provider_grace(
    grace_runtime: Runtime,
) -> None:
    """No retry without the catalog field, but the next attempt (inside the provider's grace)
    still recovers the connection: a lost answer is not a lost connection."""
    with MockProvider(MockProviderConfig(grace_seconds=30)) as provider:
        pk, _ = add_oauth2_connection(grace_runtime, provider, expires_in=-1)
        first, logs = _refresh_losing_the_answer(grace_runtime, provider, pk)
        assert first.outcome == "failed"
        assert "refresh.grace.retry" not in [e["event"] for e in logs]
        second = _service(grace_runtime).refresh(pk, trigger="on_read")
        assert second.outcome == "success"
        assert provider.stats()["grace_accepted"] == 1


def test_redis_marks_survive_the_process() -> None:
    """Marks in Redis are seen by another process's service (a killed worker's mark counts)."""
    server = fakeredis.FakeServer()
    writer = RedisInFlightMarks(fakeredis.FakeRedis(server=server))
    reader = RedisInFlightMarks(fakeredis.FakeRedis(server=server))
    writer.start(7, Mark(3, 1700000000.25))
    assert reader.get(7) == Mark(3, 1700000000.25)
    reader.clear(7)
    assert writer.get(7) is None


def test_mark_store_down_never_blocks_a_refresh() -> None:
    """A Redis error in the mark store is logged and the refresh goes on."""

    class Down(fakeredis.FakeRedis):
        def get(self, *_a: object, **_k: object) -> Any:
            import redis

            raise redis.exceptions.ConnectionError("down")

    marks = RedisInFlightMarks(Down())
    with capture_logs() as logs:
        assert marks.get(1) is None
    assert logs[0]["event"] == "refresh.inflight.unavailable"


def test_mock_token_endpoint_spends_on_timeout() -> None:
    """Sanity check of the fixture: the mock rotates even when the client stops waiting."""
    with MockProvider(MockProviderConfig(latency_seconds=1.0)) as provider:
        family = provider.seed()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                provider.token_url,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": family["refresh_token"],
                    "client_id": provider.config.client_id,
                    "client_secret": provider.config.client_secret,
                },
                timeout=0.3,
            )
        time.sleep(1.0)
        assert provider.current_refresh_token(family["refresh_token"]) != family["refresh_token"]


def test_lost_in_flight_fires_the_auth_failure_webhook(tmp_path: Path) -> None:
    """The ``refresh_token_lost_in_flight`` mark goes through the store's failure write, so the
    auth webhook (issue "Auth webhooks") is queued at once and names the cause."""
    from sqlalchemy import select

    from freshtoken.store.models import WebhookOutbox

    settings = make_settings(
        tmp_path,
        http_connect_timeout=0.5,
        http_read_timeout=1.0,
        webhook_url="http://127.0.0.1:9/hooks",
    )
    rt = make_runtime(settings)

    class Queue:
        def send_task(self, name: str, args: tuple[int]) -> None:
            """Accept the delivery task (nothing is delivered in this test)."""

    rt.celery_app = Queue()
    try:
        with MockProvider(MockProviderConfig()) as provider:
            pk, _ = add_oauth2_connection(rt, provider, expires_in=-1)
            _refresh_losing_the_answer(rt, provider, pk)
            _service(rt).refresh(pk, trigger="on_read")
        with rt.session_factory() as session:
            rows = list(session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)))
        failures = [r for r in rows if r.operation == "refresh" and not r.success]
        assert len(failures) == 1
        assert LOST_IN_FLIGHT in failures[0].body
    finally:
        rt.close()
