"""The provider rate limit applies to every trigger (issue 10, row 11)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from fastapi.testclient import TestClient
from tests.support import SECRET_KEY, add_oauth2_connection, make_runtime, make_settings

from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime


def _live(tmp_path: Path, rate: float) -> Runtime:
    settings = make_settings(tmp_path, provider_rate_limit_per_second=rate)
    return make_runtime(settings, clock=FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0)))


def _client(rt: Runtime) -> TestClient:
    return TestClient(create_app(rt), headers={"Authorization": f"Bearer {SECRET_KEY}"})


def test_twenty_forced_reads_over_the_limit_get_429_not_provider_calls(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """One slot per 30 s: of 20 forced reads one reaches the provider, 19 answer 429
    rate_limited at once (were 20 provider calls). The slot interval is far longer than the
    test can take on a loaded machine, so a second slot cannot open during it."""
    rt = _live(tmp_path, rate=1 / 30)
    try:
        add_oauth2_connection(rt, mock_provider, connection_id="c1", integration_key="mock")
        before = mock_provider.stats()["token_calls"]
        started = time.monotonic()
        with _client(rt) as client:
            answers = [
                client.get(
                    "/connections/c1",
                    params={"provider_config_key": "mock", "force_refresh": "true"},
                )
                for _ in range(20)
            ]
        assert mock_provider.stats()["token_calls"] - before == 1
        statuses = [a.status_code for a in answers]
        assert statuses[0] == 200 and statuses[1:] == [429] * 19
        assert {a.json()["error"]["code"] for a in answers[1:]} == {"rate_limited"}
        assert time.monotonic() - started < 10  # refused at once, not after waiting
    finally:
        rt.close()


def test_manual_refresh_counts_against_the_limit(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """POST .../refresh over the limit is 429 rate_limited, without a provider call."""
    rt = _live(tmp_path, rate=0.2)
    try:
        add_oauth2_connection(rt, mock_provider, connection_id="c1", integration_key="mock")
        with _client(rt) as client:
            first = client.post("/connections/c1/refresh", params={"provider_config_key": "mock"})
            calls = mock_provider.stats()["token_calls"]
            second = client.post("/connections/c1/refresh", params={"provider_config_key": "mock"})
        assert first.status_code == 200
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "rate_limited"
        assert mock_provider.stats()["token_calls"] == calls
    finally:
        rt.close()


def test_forced_reads_within_a_short_wait_are_served(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """At 4 slots per second, 4 forced reads in a row wait briefly and all succeed, paced."""
    rt = _live(tmp_path, rate=4.0)
    try:
        add_oauth2_connection(rt, mock_provider, connection_id="c1", integration_key="mock")
        started = time.monotonic()
        with _client(rt) as client:
            for _ in range(4):
                response = client.get(
                    "/connections/c1",
                    params={"provider_config_key": "mock", "force_refresh": "true"},
                )
                assert response.status_code == 200
        assert time.monotonic() - started >= 0.7  # three waits of ~0.25 s
    finally:
        rt.close()


def test_on_read_over_the_limit_serves_the_still_valid_token(
    tmp_path: Path, mock_provider: MockProvider
) -> None:
    """A read inside the margin whose refresh is throttled serves the stored, still valid
    token instead of failing."""
    rt = _live(tmp_path, rate=0.2)
    try:
        add_oauth2_connection(rt, mock_provider, connection_id="a", integration_key="mock")
        _, family = add_oauth2_connection(
            rt, mock_provider, connection_id="b", integration_key="mock", expires_in=60
        )
        with _client(rt) as client:
            forced = client.get(
                "/connections/a", params={"provider_config_key": "mock", "force_refresh": "true"}
            )
            assert forced.status_code == 200
            response = client.get("/connections/b", params={"provider_config_key": "mock"})
        assert response.status_code == 200
        assert response.json()["credentials"]["access_token"] == family["access_token"]
    finally:
        rt.close()
