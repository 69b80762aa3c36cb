"""Two API processes sharing Redis: a callback on one reaches the WebSocket held by the other.

With ``freshtoken api --workers N`` (or several replicas) the browser's WebSocket and its popup's
callback can land on different processes; the result frame is relayed through Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime, build_runtime
from tests.support import AUTH_HEADERS, make_settings, redis_client

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _quiet_httpx() -> Iterator[None]:
    """httpx logs every URL it requests; callback URLs carry codes."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def test_result_frame_crosses_processes(tmp_path: Path) -> None:
    """WebSocket and flow start on process A, callback on process B: A's socket gets success."""
    redis = redis_client()
    url = f"sqlite:///{(tmp_path / 'ft.db').as_posix()}"
    runtimes: list[Runtime] = [
        build_runtime(make_settings(tmp_path, url), redis_client=redis, with_refresher=False)
        for _ in range(2)
    ]
    migrate.upgrade(runtimes[0].engine)
    with MockProvider() as provider:
        with runtimes[0].store() as store:
            store.create_integration(
                unique_key="mock",
                provider="oauth2",
                client_id=provider.config.client_id,
                client_secret=provider.config.client_secret,
            )
        a = TestClient(create_app(runtimes[0]), headers=AUTH_HEADERS)
        b = TestClient(create_app(runtimes[1]), headers=AUTH_HEADERS)
        with a, b:
            token = a.post(
                "/connect/sessions",
                json={
                    "end_user": {"id": "u1"},
                    "allowed_integrations": ["mock"],
                    "integrations_config_defaults": {
                        "mock": {
                            "connection_config": {
                                "authorization_url": provider.url + "/authorize",
                                "token_url": provider.token_url,
                            }
                        }
                    },
                },
            ).json()["data"]["token"]
            with a.websocket_connect("/") as ws:
                ack = orjson.loads(ws.receive_text())
                start = a.get(
                    "/oauth/connect/mock",
                    params={"connect_session_token": token, "ws_client_id": ack["ws_client_id"]},
                    follow_redirects=False,
                )
                consent = httpx.get(start.headers["location"], follow_redirects=False)
                back = urlsplit(consent.headers["location"])
                page = b.get(f"{back.path}?{back.query}")  # the other process
                assert page.status_code == 200, page.text
                frame = orjson.loads(ws.receive_text())
            assert frame["message_type"] == "success"
            assert frame["provider_config_key"] == "mock"
    for runtime in runtimes:
        runtime.websocket_hub().close()
        runtime.close()
