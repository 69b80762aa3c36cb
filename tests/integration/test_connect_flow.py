"""Connect sessions and the OAuth 2 authorization-code flow, in process, on SQLite and PostgreSQL.

The browser is played by the test: the API's redirect is followed to the real mock provider's
``/authorize`` (which checks client, redirect URI and PKCE) and its redirect back to
``/oauth/callback``; the WebSocket frame ``@nangohq/frontend`` waits for is read from the API's
root path. ``tests/connect_browser`` runs the same flow in a real Chromium with Nango's frontend
SDK.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.store.models import Connection, ConnectSession, OAuthSession
from tests.support import AUTH_HEADERS, make_settings

pytestmark = pytest.mark.integration

KEY = "mock"
OTHER_KEY = "mock-other"


@pytest.fixture(autouse=True)
def _quiet_httpx() -> Iterator[None]:
    """httpx logs every URL it requests; the test's own callback URLs carry codes."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def module_provider() -> Iterator[MockProvider]:
    """The mock OAuth provider shared by this module's tests (default config)."""
    with MockProvider(MockProviderConfig(token_lifetime_seconds=3600)) as mock:
        yield mock


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime_per_db(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Runtime]:
    """A migrated runtime on SQLite, then on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'ft.db').as_posix()}"
    else:
        url = request.getfixturevalue("pg_url")
    rt = build_runtime(make_settings(tmp_path, url), clock=clock, with_refresher=False)
    migrate.upgrade(rt.engine)
    if request.param == "postgresql":  # the schema is shared by the module: start empty
        with rt.engine.begin() as conn:
            for table in ("oauth_sessions", "connect_sessions", "connections", "integrations"):
                conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def connect_client(runtime_per_db: Runtime, module_provider: MockProvider) -> Iterator[TestClient]:
    """An API client (secret key sent) with two integrations on the mock provider."""
    module_provider.configure(
        deny_consent=False,
        tamper_state=False,
        reissue_used_code=False,
        corrupt_code_challenge=False,
    )
    with runtime_per_db.store() as store:
        for key in (KEY, OTHER_KEY):
            store.create_integration(
                unique_key=key,
                provider="oauth2",
                client_id=module_provider.config.client_id,
                client_secret=module_provider.config.client_secret,
                scopes="mock.read,mock.write",
            )
    with TestClient(create_app(runtime_per_db), headers=AUTH_HEADERS) as test_client:
        yield test_client


def _endpoints(module_provider: MockProvider) -> dict[str, Any]:
    return {
        KEY: {
            "connection_config": {
                "authorization_url": module_provider.url + "/authorize",
                "token_url": module_provider.token_url,
            }
        }
    }


def new_session(connect_client: TestClient, module_provider: MockProvider, **extra: Any) -> str:
    """POST /connect/sessions for end user u1 (allowed: KEY) and return the token."""
    body = {
        "end_user": {"id": "u1", "email": "u1@example.com", "tags": {"Team": "core"}},
        "organization": {"id": "org1", "display_name": "Org One"},
        "allowed_integrations": [KEY],
        "integrations_config_defaults": _endpoints(module_provider),
        "tags": {"plan": "pro"},
        **extra,
    }
    response = connect_client.post("/connect/sessions", json=body)
    assert response.status_code == 201, response.text
    token: str = response.json()["data"]["token"]
    return token


def run_flow(
    connect_client: TestClient, token: str, ws_client_id: str | None = None, key: str = KEY
) -> httpx.Response:
    """Start the flow, pass the mock provider's consent, and return the callback's answer."""
    params = {"connect_session_token": token}
    if ws_client_id:
        params["ws_client_id"] = ws_client_id
    start = connect_client.get(f"/oauth/connect/{key}", params=params, follow_redirects=False)
    assert start.status_code == 302, start.text
    consent = httpx.get(start.headers["location"], follow_redirects=False)
    assert consent.status_code == 302, consent.text
    back = urlsplit(consent.headers["location"])
    assert back.path == "/oauth/callback"
    return connect_client.get(f"{back.path}?{back.query}")


def _count(runtime_per_db: Runtime, model: Any) -> int:
    with runtime_per_db.store() as store:
        return int(store.session.scalar(select(func.count()).select_from(model)) or 0)


def test_session_is_created_hashed_and_expires_after_30_minutes(
    connect_client: TestClient, runtime_per_db: Runtime, clock: FakeClock
) -> None:
    """201 {data:{token, connect_link, expires_at}}; only the digest is stored; 401 after 30 min."""
    response = connect_client.post(
        "/connect/sessions", json={"end_user": {"id": "u1"}, "allowed_integrations": [KEY]}
    )
    assert response.status_code == 201
    data = response.json()["data"]
    token = data["token"]
    assert token.startswith("nango_connect_session_") and len(token) == 22 + 64
    assert data["connect_link"].endswith("/connect?session_token=" + token)
    expires = dt.datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert expires == clock.now() + dt.timedelta(minutes=30)
    with runtime_per_db.engine.connect() as conn:
        dump = str(conn.execute(text("SELECT * FROM connect_sessions")).fetchall())
    assert token not in dump and token[22:] not in dump

    bearer = {"Authorization": f"Bearer {token}"}
    got = connect_client.get("/connect/session", headers=bearer)
    assert got.status_code == 200
    assert got.json()["data"]["allowed_integrations"] == [KEY]
    assert got.json()["data"]["endUser"] == {"id": "u1"}
    clock.advance(30 * 60 + 1)
    expired = connect_client.get("/connect/session", headers=bearer)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "unknown_connect_session_token"


def test_session_validation(connect_client: TestClient) -> None:
    """Unknown integration, missing end user, bad tags and a non-empty query are 400s."""
    unknown = connect_client.post(
        "/connect/sessions", json={"end_user": {"id": "u"}, "allowed_integrations": ["nope"]}
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_body"
    assert connect_client.post("/connect/sessions", json={}).status_code == 400
    bad_tag = connect_client.post("/connect/sessions", json={"tags": {"1bad": "x"}})
    assert bad_tag.status_code == 400
    query = connect_client.post("/connect/sessions?x=1", json={"end_user": {"id": "u"}})
    assert query.status_code == 400
    anon = connect_client.post(
        "/connect/sessions", json={"end_user": {"id": "u"}}, headers={"Authorization": ""}
    )
    assert anon.status_code == 401


def test_delete_ends_the_session_and_its_flows(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """DELETE /connect/session → 204; a flow it started then fails with no connection stored."""
    token = new_session(connect_client, module_provider)
    start = connect_client.get(
        f"/oauth/connect/{KEY}", params={"connect_session_token": token}, follow_redirects=False
    )
    assert start.status_code == 302
    consent = httpx.get(start.headers["location"], follow_redirects=False)
    deleted = connect_client.delete(
        "/connect/session", headers={"Authorization": f"Bearer {token}"}
    )
    assert deleted.status_code == 204
    back = urlsplit(consent.headers["location"])
    page = connect_client.get(f"{back.path}?{back.query}")
    assert page.status_code == 400
    assert "state_err" in page.text
    assert _count(runtime_per_db, Connection) == 0
    again = connect_client.get("/connect/session", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401


def test_start_checks_the_session_and_the_integration(
    connect_client: TestClient, module_provider: MockProvider
) -> None:
    """No token → 401; unknown token → 401; integration outside the session → 400."""
    missing = connect_client.get(f"/oauth/connect/{KEY}", follow_redirects=False)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_connect_session_token"
    bogus = connect_client.get(
        f"/oauth/connect/{KEY}",
        params={"connect_session_token": "nango_connect_session_" + "0" * 64},
        follow_redirects=False,
    )
    assert bogus.json()["error"]["code"] == "unknown_connect_session_token"
    token = new_session(connect_client, module_provider)
    other = connect_client.get(
        f"/oauth/connect/{OTHER_KEY}",
        params={"connect_session_token": token},
        follow_redirects=False,
    )
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "integration_not_allowed"
    override = connect_client.get(
        f"/oauth/connect/{KEY}",
        params={"connect_session_token": token, "credentials[oauth_client_id_override]": "x"},
        follow_redirects=False,
    )
    assert override.status_code == 400
    assert override.json()["error"]["code"] == "invalid_query_params"
    unknown = connect_client.get(
        f"/oauth/connect/{KEY}",
        params={"connect_session_token": token, "bogus": "1"},
        follow_redirects=False,
    )
    assert unknown.status_code == 400


def test_authorization_url_has_state_pkce_and_no_open_redirect(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """The redirect carries Nango's parameters; request params cannot replace redirect_uri/state."""
    token = new_session(connect_client, module_provider)
    start = connect_client.get(
        f"/oauth/connect/{KEY}",
        params={
            "connect_session_token": token,
            "authorization_params[redirect_uri]": "https://evil.example/steal",
            "authorization_params[prompt]": "consent",
            "params[token_url]": "https://evil.example/token",
        },
        follow_redirects=False,
    )
    assert start.status_code == 302
    location = urlsplit(start.headers["location"])
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == module_provider.url + "/authorize"
    )
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert list(query)[:5] == ["response_type", "client_id", "redirect_uri", "scope", "state"]
    assert query["redirect_uri"] == runtime_per_db.settings.resolved_public_url + "/oauth/callback"
    assert query["scope"] == "mock.read mock.write"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["prompt"] == "consent"
    assert "state" in query and len(query["state"]) >= 32
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("oauth2-") and "HttpOnly" in cookie
    with runtime_per_db.store() as store:
        row = store.session.scalars(select(OAuthSession)).one()
        # The browser cannot choose where the code and client secret are sent.
        assert row.connection_config["token_url"] == module_provider.token_url
        assert query["state"] not in str(row.state_hash)
        assert row.code_verifier_enc is not None and row.code_verifier_enc.startswith("v1.")


def test_flow_creates_the_connection_and_answers_like_nango(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """Success frame on the WebSocket, 200 page, connection encrypted, tagged and scheduled."""
    token = new_session(connect_client, module_provider)
    with connect_client.websocket_connect("/") as ws:
        ack = orjson.loads(ws.receive_text())
        assert ack["message_type"] == "connection_ack"
        page = run_flow(connect_client, token, ack["ws_client_id"])
        frame = orjson.loads(ws.receive_text())
    assert page.status_code == 200
    assert "nango_oauth_callback_success" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert frame["message_type"] == "success"
    assert frame["provider_config_key"] == KEY and frame["is_pending"] is False
    conn_id = frame["connection_id"]

    got = connect_client.get(f"/connections/{conn_id}", params={"provider_config_key": KEY})
    assert got.status_code == 200, got.text
    body = got.json()
    access_token = body["credentials"]["access_token"]
    assert module_provider.is_access_token_valid(access_token)
    assert body["tags"] == {
        "end_user_id": "u1",
        "end_user_email": "u1@example.com",
        "organization_id": "org1",
        "organization_display_name": "Org One",
        "team": "core",
        "plan": "pro",
    }
    assert body["end_user"]["id"] == "u1"
    assert body["end_user"]["organization"]["id"] == "org1"
    with runtime_per_db.store() as store:
        conn = store.get_connection(KEY, conn_id)
        assert conn is not None
        assert conn.next_refresh_at is not None and conn.has_refresh_token
        assert access_token not in (conn.credentials_enc or "")
    assert _count(runtime_per_db, OAuthSession) == 0
    # The session outlives a success (Nango's behaviour).
    assert _count(runtime_per_db, ConnectSession) == 1


def test_reused_state_and_code_store_nothing(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """A callback replayed (same state and code) is state_err; the first result is unchanged."""
    token = new_session(connect_client, module_provider)
    start = connect_client.get(
        f"/oauth/connect/{KEY}", params={"connect_session_token": token}, follow_redirects=False
    )
    consent = httpx.get(start.headers["location"], follow_redirects=False)
    back = urlsplit(consent.headers["location"])
    first = connect_client.get(f"{back.path}?{back.query}")
    assert first.status_code == 200
    before = _count(runtime_per_db, Connection)
    replay = connect_client.get(f"{back.path}?{back.query}")
    assert replay.status_code == 400
    assert "state_err" in replay.text
    code = parse_qs(back.query)["code"][0]
    assert code not in replay.text
    assert _count(runtime_per_db, Connection) == before == 1


@pytest.mark.parametrize(
    ("switch", "error_type"),
    [
        ("deny_consent", "callback_err"),
        ("corrupt_code_challenge", "token_err"),
        ("tamper_state", "state_err"),
    ],
)
def test_failures_answer_with_nango_error_types(
    connect_client: TestClient,
    runtime_per_db: Runtime,
    module_provider: MockProvider,
    switch: str,
    error_type: str,
) -> None:
    """Denied consent, a wrong PKCE verifier and a tampered state: error frame, 400 page, no row."""
    token = new_session(connect_client, module_provider)
    module_provider.configure(**{switch: True})
    with connect_client.websocket_connect("/") as ws:
        ack = orjson.loads(ws.receive_text())
        page = run_flow(connect_client, token, ack["ws_client_id"])
        frame = orjson.loads(ws.receive_text())
    assert page.status_code == 400
    assert frame["message_type"] == "error"
    assert frame["error_type"] == error_type
    assert f'"errorType":"{error_type}"' in page.text
    assert "mock-code-" not in page.text and "mock-code-" not in frame["error_desc"]
    assert _count(runtime_per_db, Connection) == 0
    assert _count(runtime_per_db, OAuthSession) == 0


def test_replayed_code_is_a_token_error(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """A code that was already exchanged (new state) is refused by the provider: token_err."""
    token = new_session(connect_client, module_provider)
    assert run_flow(connect_client, token).status_code == 200
    module_provider.configure(reissue_used_code=True)
    with connect_client.websocket_connect("/") as ws:
        ack = orjson.loads(ws.receive_text())
        page = run_flow(connect_client, token, ack["ws_client_id"])
        frame = orjson.loads(ws.receive_text())
    assert page.status_code == 400
    assert frame["error_type"] == "token_err"
    assert _count(runtime_per_db, Connection) == 1


def test_reconnect_overrides_the_same_connection(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """A reconnect session re-authorises the existing connection (override, same id, new token)."""
    token = new_session(connect_client, module_provider)
    with connect_client.websocket_connect("/") as ws:
        ack = orjson.loads(ws.receive_text())
        run_flow(connect_client, token, ack["ws_client_id"])
        conn_id = orjson.loads(ws.receive_text())["connection_id"]
    first = connect_client.get(
        f"/connections/{conn_id}", params={"provider_config_key": KEY}
    ).json()
    response = connect_client.post(
        "/connect/sessions/reconnect",
        json={
            "connection_id": conn_id,
            "integration_id": KEY,
            "integrations_config_defaults": _endpoints(module_provider),
        },
    )
    assert response.status_code == 201, response.text
    reconnect = response.json()["data"]["token"]
    with connect_client.websocket_connect("/") as ws:
        ack = orjson.loads(ws.receive_text())
        run_flow(connect_client, reconnect, ack["ws_client_id"])
        frame = orjson.loads(ws.receive_text())
    assert frame["message_type"] == "success" and frame["connection_id"] == conn_id
    second = connect_client.get(
        f"/connections/{conn_id}", params={"provider_config_key": KEY}
    ).json()
    assert second["credentials"]["access_token"] != first["credentials"]["access_token"]
    assert second["tags"]["end_user_id"] == "u1"
    assert _count(runtime_per_db, Connection) == 1
    missing = connect_client.post(
        "/connect/sessions/reconnect", json={"connection_id": "nope", "integration_id": KEY}
    )
    assert missing.status_code == 400


def test_missing_connection_config_is_url_param_err(
    connect_client: TestClient, runtime_per_db: Runtime
) -> None:
    """Without the generic entry's endpoints the flow fails before anything is stored."""
    response = connect_client.post(
        "/connect/sessions", json={"end_user": {"id": "u1"}, "allowed_integrations": [KEY]}
    )
    token = response.json()["data"]["token"]
    with connect_client.websocket_connect("/") as ws:
        ack = orjson.loads(ws.receive_text())
        page = connect_client.get(
            f"/oauth/connect/{KEY}",
            params={"connect_session_token": token, "ws_client_id": ack["ws_client_id"]},
            follow_redirects=False,
        )
        frame = orjson.loads(ws.receive_text())
    assert page.status_code == 400
    assert frame["error_type"] == "url_param_err"
    assert "authorization_url" in frame["error_desc"]
    assert _count(runtime_per_db, OAuthSession) == 0


# -- popup-free routes --------------------------------------------------------------------------


def _add_integration(runtime_per_db: Runtime, key: str, provider_name: str) -> None:
    with runtime_per_db.store() as store:
        store.create_integration(unique_key=key, provider=provider_name)


def _session_for(
    connect_client: TestClient, key: str, defaults: dict[str, Any] | None = None
) -> str:
    body: dict[str, Any] = {"end_user": {"id": "u2"}, "allowed_integrations": [key]}
    if defaults is not None:
        body["integrations_config_defaults"] = {key: defaults}
    response = connect_client.post("/connect/sessions", json=body)
    assert response.status_code == 201, response.text
    token: str = response.json()["data"]["token"]
    return token


def test_api_key_and_basic_connections_from_the_browser(
    connect_client: TestClient, runtime_per_db: Runtime
) -> None:
    """Nango's /api-auth routes store the credentials with the session's tags; CORS for fetch."""
    _add_integration(runtime_per_db, "keys", "api-key")
    _add_integration(runtime_per_db, "basics", "basic")
    token = _session_for(connect_client, "keys")
    browser = TestClient(
        connect_client.app
    )  # no secret key: the session token is the only credential
    preflight = browser.options(
        "/api-auth/api-key/keys",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    made = browser.post(
        f"/api-auth/api-key/keys?connect_session_token={token}",
        json={"apiKey": "key-value-1"},
        headers={"Origin": "http://app.example"},
    )
    assert made.status_code == 200, made.text
    assert made.headers["access-control-allow-origin"] == "*"
    conn_id = made.json()["connectionId"]
    assert made.json()["providerConfigKey"] == "keys"
    got = connect_client.get(
        f"/connections/{conn_id}", params={"provider_config_key": "keys"}
    ).json()
    assert got["credentials"] == {"type": "API_KEY", "apiKey": "key-value-1"}
    assert got["tags"] == {"end_user_id": "u2"}
    # The session does not allow "basics"; a new one does.
    refused = browser.post(
        f"/api-auth/basic/basics?connect_session_token={token}",
        json={"username": "u", "password": "p"},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "integration_not_allowed"
    basic_token = _session_for(connect_client, "basics")
    basic = browser.post(
        f"/api-auth/basic/basics?connect_session_token={basic_token}",
        json={"username": "u", "password": "p"},
    )
    assert basic.status_code == 200, basic.text
    wrong_mode = browser.post(
        f"/api-auth/api-key/{KEY}?connect_session_token={_session_for(connect_client, KEY)}",
        json={"apiKey": "x"},
    )
    assert wrong_mode.status_code == 400
    assert wrong_mode.json()["error"]["code"] == "invalid_auth_mode"
    assert browser.post("/api-auth/api-key/keys", json={"apiKey": "x"}).status_code == 401


def test_client_credentials_connection_runs_the_grant_first(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """POST /oauth2/auth runs the grant at the provider; a refused client stores nothing."""
    _add_integration(runtime_per_db, "cc", "oauth2-cc")
    token = _session_for(
        connect_client, "cc", {"connection_config": {"token_url": module_provider.token_url}}
    )
    browser = TestClient(connect_client.app)
    url = f"/oauth2/auth/cc?connect_session_token={token}"
    refused = browser.post(url, json={"client_id": "mock-client", "client_secret": "wrong"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_credentials"
    assert _count(runtime_per_db, Connection) == 0
    made = browser.post(
        url,
        json={
            "client_id": module_provider.config.client_id,
            "client_secret": module_provider.config.client_secret,
        },
    )
    assert made.status_code == 200, made.text
    conn_id = made.json()["connectionId"]
    got = connect_client.get(f"/connections/{conn_id}", params={"provider_config_key": "cc"}).json()
    assert got["credentials"]["type"] == "OAUTH2_CC"
    assert module_provider.is_access_token_valid(got["credentials"]["token"])
    with runtime_per_db.store() as store:
        conn = store.get_connection("cc", conn_id)
        assert conn is not None and conn.next_refresh_at is not None


def test_a_state_is_claimed_once_under_concurrency(
    connect_client: TestClient, runtime_per_db: Runtime, module_provider: MockProvider
) -> None:
    """Eight simultaneous callbacks with one state: exactly one exchange, one success."""
    import threading

    from freshtoken.connect import flow

    token = new_session(connect_client, module_provider)
    start = connect_client.get(
        f"/oauth/connect/{KEY}", params={"connect_session_token": token}, follow_redirects=False
    )
    consent = httpx.get(start.headers["location"], follow_redirects=False)
    query = {k: v[0] for k, v in parse_qs(urlsplit(consent.headers["location"]).query).items()}
    before = module_provider.stats().get("authorization_code_calls", 0)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def callback() -> None:
        barrier.wait()
        try:
            flow.callback(runtime_per_db, query, runtime_per_db.connect_http_client())
            outcomes.append("ok")
        except flow.FlowError as exc:
            outcomes.append(exc.error_type)

    threads = [threading.Thread(target=callback) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["ok"] + ["state_err"] * 7
    assert module_provider.stats()["authorization_code_calls"] - before == 1
    assert _count(runtime_per_db, Connection) == 1


def test_connect_page_lists_the_session_integrations(
    connect_client: TestClient, module_provider: MockProvider
) -> None:
    """The connect_link page links each allowed integration's flow; a bad token is a 401."""
    token = new_session(connect_client, module_provider)
    page = connect_client.get("/connect", params={"session_token": token})
    assert page.status_code == 200
    assert f'href="/oauth/connect/{KEY}?connect_session_token={token}"' in page.text
    assert OTHER_KEY not in page.text
    assert connect_client.get("/connect", params={"session_token": "x"}).status_code == 401
