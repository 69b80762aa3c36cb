"""OAuth 1.0a connect flow against the mock provider's three legs (signed with HMAC-SHA1)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from freshtoken.api.app import create_app
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime
from tests.support import AUTH_HEADERS, make_runtime, make_settings

pytestmark = pytest.mark.integration

KEY = "trello-like"


@pytest.fixture(autouse=True)
def _quiet_httpx() -> Iterator[None]:
    """httpx logs every URL it requests; callback URLs carry verifiers."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Runtime, MockProvider, TestClient]]:
    """A runtime whose catalog has an OAUTH1 entry on the mock provider, and an API client."""
    with MockProvider() as provider:
        catalog = tmp_path / "providers.yaml"
        catalog.write_text(
            f"""
mock-oauth1:
    auth_mode: OAUTH1
    request_url: {provider.url}/oauth1/request_token
    authorization_url: {provider.url}/oauth1/authorize
    token_url: {provider.url}/oauth1/access_token
    signature_method: HMAC-SHA1
""",
            encoding="utf-8",
        )
        runtime = make_runtime(
            make_settings(
                tmp_path, f"sqlite:///{(tmp_path / 'ft.db').as_posix()}", providers_file=catalog
            )
        )
        with runtime.store() as store:
            store.create_integration(
                unique_key=KEY,
                provider="mock-oauth1",
                client_id=provider.config.client_id,
                client_secret=provider.config.client_secret,
            )
        with TestClient(create_app(runtime), headers=AUTH_HEADERS) as client:
            yield runtime, provider, client
        runtime.close()


def _flow(client: TestClient) -> tuple[httpx.Response, dict[str, object]]:
    token = client.post(
        "/connect/sessions", json={"end_user": {"id": "u1"}, "allowed_integrations": [KEY]}
    ).json()["data"]["token"]
    with client.websocket_connect("/") as ws:
        ack = orjson.loads(ws.receive_text())
        start = client.get(
            f"/oauth/connect/{KEY}",
            params={"connect_session_token": token, "ws_client_id": ack["ws_client_id"]},
            follow_redirects=False,
        )
        assert start.status_code == 302, start.text
        consent = httpx.get(start.headers["location"], follow_redirects=False)
        assert consent.status_code == 302, consent.text
        back = urlsplit(consent.headers["location"])
        page = client.get(f"{back.path}?{back.query}")
        frame = orjson.loads(ws.receive_text())
    return page, frame


def test_oauth1_flow_stores_token_credentials(
    setup: tuple[Runtime, MockProvider, TestClient],
) -> None:
    """Request token, consent, access token: an OAUTH1 connection the provider issued."""
    runtime, provider, client = setup
    page, frame = _flow(client)
    assert page.status_code == 200, page.text
    assert frame["message_type"] == "success"
    got = client.get(
        f"/connections/{frame['connection_id']}", params={"provider_config_key": KEY}
    ).json()
    credentials = got["credentials"]
    assert credentials["type"] == "OAUTH1"
    assert provider._oauth1_access[credentials["oauth_token"]] == credentials["oauth_token_secret"]
    with runtime.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM oauth_sessions").fetchall()
    assert rows == []


def test_oauth1_denied_is_a_callback_error(
    setup: tuple[Runtime, MockProvider, TestClient],
) -> None:
    """A denied authorization comes back without a verifier: callback_err, nothing stored."""
    _runtime, provider, client = setup
    provider.configure(deny_consent=True)
    page, frame = _flow(client)
    assert page.status_code == 400
    assert frame["error_type"] == "callback_err"
    assert client.get("/connections").json()["connections"] == []
