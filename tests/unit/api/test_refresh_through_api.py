"""Refresh outcomes through the HTTP API with the real refresh engine and the HTTP mock provider."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs
from tests.support import SECRET_KEY, add_oauth2_connection, make_runtime, make_settings

from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime


@pytest.fixture
def clock() -> FakeClock:
    """A controllable clock starting now."""
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def live(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Runtime, TestClient]]:
    """A runtime with the refresh engine and an authenticated client on its API."""
    rt = make_runtime(make_settings(tmp_path), clock=clock)
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {SECRET_KEY}"}) as client:
        yield rt, client
    rt.close()


def _get(client: TestClient, cid: str, **params: str) -> Any:
    return client.get(f"/connections/{cid}", params={"provider_config_key": "mock", **params})


def _events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "token.refresh"]


def test_expired_token_is_refreshed_by_a_read(
    live: tuple[Runtime, TestClient], mock_provider: MockProvider
) -> None:
    """GET on an expired connection returns a new, valid token (trigger on_read)."""
    rt, client = live
    add_oauth2_connection(rt, mock_provider, connection_id="c1", expires_in=-5)
    with capture_logs() as logs:
        response = _get(client, "c1")
    assert response.status_code == 200
    token = response.json()["credentials"]["access_token"]
    assert mock_provider.is_access_token_valid(token)
    assert [e["trigger"] for e in _events(logs)] == ["on_read"]


def test_provider_rejection_is_400_invalid_credentials(
    live: tuple[Runtime, TestClient], mock_provider: MockProvider
) -> None:
    """invalid_grant → 400 invalid_credentials with the connection (no credentials) and log_id."""
    rt, client = live
    add_oauth2_connection(rt, mock_provider, connection_id="c1", expires_in=-5)
    mock_provider.inject("invalid_grant")
    with capture_logs() as logs:
        response = _get(client, "c1")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_credentials"
    connection = error["payload"]["connection"]
    assert connection["credentials"] == {}
    (event,) = _events(logs)
    assert connection["errors"] == [{"type": "auth", "log_id": event["log_id"]}]
    assert (event["error_code"], event["error_class"]) == ("invalid_grant", "permanent")
    # The connection now needs re-authorisation: reads get 424 without a provider call.
    calls = mock_provider.stats()["token_calls"]
    again = _get(client, "c1")
    assert again.status_code == 424
    assert again.json()["error"]["code"] == "invalid_credentials"
    assert mock_provider.stats()["token_calls"] == calls


def test_cooldown_then_recovery(
    live: tuple[Runtime, TestClient], mock_provider: MockProvider, clock: FakeClock
) -> None:
    """A 5xx on an expired token is 400; a read within the 2 s retry backoff is 424 without a
    provider call; past it, a read tries once more (400 while the provider still fails); once it
    is healthy the next read past the backoff heals, inside the 30 s cooldown."""
    rt, client = live
    add_oauth2_connection(rt, mock_provider, connection_id="c1", expires_in=-5)
    mock_provider.inject("500", count=2)
    assert _get(client, "c1").status_code == 400
    calls = mock_provider.stats()["token_calls"]
    clock.advance(1)
    backing_off = _get(client, "c1")
    assert backing_off.status_code == 424, backing_off.text
    assert mock_provider.stats()["token_calls"] == calls  # no provider call inside the backoff
    clock.advance(1.5)
    assert _get(client, "c1").status_code == 400
    assert mock_provider.stats()["token_calls"] == calls + 1  # one attempt past the backoff
    clock.advance(2.5)
    healed = _get(client, "c1")
    assert healed.status_code == 200
    assert mock_provider.is_access_token_valid(healed.json()["credentials"]["access_token"])


def test_transient_failure_with_valid_token_serves_it(
    live: tuple[Runtime, TestClient], mock_provider: MockProvider
) -> None:
    """A timeout while the token is still valid (inside the margin) returns that token, 200."""
    rt, client = live
    _, family = add_oauth2_connection(rt, mock_provider, connection_id="c1", expires_in=120)
    mock_provider.inject("503")
    with capture_logs() as logs:
        response = _get(client, "c1")
    assert response.status_code == 200
    assert response.json()["credentials"]["access_token"] == family["access_token"]
    assert _events(logs)[0]["outcome"] == "failed"


def test_exhausted_after_four_failing_days_is_424(
    live: tuple[Runtime, TestClient], mock_provider: MockProvider, clock: FakeClock
) -> None:
    """Forced reads failing on four different days exhaust the connection; then reads get 424."""
    rt, client = live
    add_oauth2_connection(rt, mock_provider, connection_id="c1", expires_in=-5)
    for _ in range(4):
        mock_provider.inject("500")
        assert _get(client, "c1", force_refresh="true").status_code == 400
        clock.advance(86400)
    response = _get(client, "c1")
    assert response.status_code == 424
    assert response.json()["error"]["message"] == (
        "The refresh limit has been reached for this connection."
    )


def test_force_refresh_endpoint_reports_the_outcome(
    live: tuple[Runtime, TestClient], mock_provider: MockProvider
) -> None:
    """POST /connections/{id}/refresh forces one refresh and reports it without the token."""
    rt, client = live
    _, family = add_oauth2_connection(rt, mock_provider, connection_id="c1")
    with capture_logs() as logs:
        response = client.post("/connections/c1/refresh", params={"provider_config_key": "mock"})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["outcome"] == "success"
    assert family["access_token"] not in response.text
    (event,) = _events(logs)
    assert event["trigger"] == "manual" and event["log_id"] == body["log_id"]
    mock_provider.inject("invalid_grant")
    failed = client.post("/connections/c1/refresh", params={"provider_config_key": "mock"})
    assert failed.status_code == 400
    assert failed.json()["error"]["payload"]["error_code"] == "invalid_grant"
    missing = client.post("/connections/nope/refresh", params={"provider_config_key": "mock"})
    assert missing.status_code == 404
    no_pck = client.post("/connections/c1/refresh")
    assert no_pck.status_code == 400
    assert no_pck.json()["error"]["code"] == "invalid_query_params"
