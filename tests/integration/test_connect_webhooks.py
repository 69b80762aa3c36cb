"""Connections made through the connect flow send Nango's auth webhooks (creation, override)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from freshtoken.api.app import create_app
from freshtoken.mockprovider import MockProvider
from freshtoken.store.models import WebhookOutbox
from tests.support import AUTH_HEADERS, make_runtime, make_settings

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _quiet_httpx() -> Iterator[None]:
    """httpx logs every URL it requests; callback URLs carry codes."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def _flow(client: TestClient, token: str) -> None:
    start = client.get(
        "/oauth/connect/mock", params={"connect_session_token": token}, follow_redirects=False
    )
    consent = httpx.get(start.headers["location"], follow_redirects=False)
    back = urlsplit(consent.headers["location"])
    assert client.get(f"{back.path}?{back.query}").status_code == 200


def test_flow_creation_and_reconnect_override_are_announced(tmp_path: Path) -> None:
    """Creation with the session's end user; a reconnect's override goes to its override URL."""
    settings = make_settings(
        tmp_path,
        f"sqlite:///{(tmp_path / 'ft.db').as_posix()}",
        webhook_url="http://127.0.0.1:9/hooks",
    )
    runtime = make_runtime(settings)
    with (
        MockProvider() as provider,
        TestClient(create_app(runtime), headers=AUTH_HEADERS) as client,
    ):
        with runtime.store() as store:
            store.create_integration(
                unique_key="mock",
                provider="oauth2",
                client_id=provider.config.client_id,
                client_secret=provider.config.client_secret,
            )
        defaults: dict[str, Any] = {
            "mock": {
                "connection_config": {
                    "authorization_url": provider.url + "/authorize",
                    "token_url": provider.token_url,
                }
            }
        }
        token = client.post(
            "/connect/sessions",
            json={
                "end_user": {"id": "u1", "email": "u1@example.com"},
                "allowed_integrations": ["mock"],
                "integrations_config_defaults": defaults,
            },
        ).json()["data"]["token"]
        _flow(client, token)
        with runtime.store() as store:
            rows = list(store.session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)))
            assert [(r.operation, r.success, r.url) for r in rows] == [
                ("creation", True, "http://127.0.0.1:9/hooks")
            ]
            body = orjson.loads(rows[0].body)
            conn_id = rows[0].connection_id
        assert body["endUser"]["endUserId"] == "u1"
        assert body["tags"]["end_user_id"] == "u1"
        reconnect = client.post(
            "/connect/sessions/reconnect",
            json={
                "connection_id": conn_id,
                "integration_id": "mock",
                "integrations_config_defaults": defaults,
                "webhook_url_override": "http://127.0.0.1:9/override",
            },
        ).json()["data"]["token"]
        _flow(client, reconnect)
        with runtime.store() as store:
            rows = list(store.session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)))
            assert [(r.operation, r.url) for r in rows[1:]] == [
                ("override", "http://127.0.0.1:9/override")
            ]
    runtime.close()
