"""The connect flow in a real browser: Nango's frontend SDK, Debian's Chromium, a live API.

``@nangohq/frontend`` **0.71.10** (pinned in ``tests/connect_browser/package.json``, served
unchanged as ES modules) runs in a page of its own origin and calls ``auth()`` against a live
``freshtoken api`` process. The popup goes to the in-process mock provider's ``/authorize``
(auto-consent, codes bound to client, redirect URI and PKCE challenge) and back to
``/oauth/callback``; the SDK's promise must resolve ``{providerConfigKey, connectionId}`` from
the WebSocket frame. The stored token must then work at the mock provider, and a proactive scan
(driven in process on the same database, with the clock moved to the refresh time) must
refresh it. Failure paths (denied consent, tampered state, replayed code, wrong PKCE verifier)
must reject the promise with Nango's error types.

Chromium is driven by ``playwright-core`` with ``executablePath`` (no browser download). Without
Chromium, node or npm the module is skipped, unless ``FRESHTOKEN_REQUIRE_SERVICES=1`` (CI),
where it fails.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from freshtoken import migrate
from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.runtime import build_runtime
from freshtoken.settings import Settings
from freshtoken.worker.scan import Job, RefreshScanner
from tests.support import ENCRYPTION_KEY, REQUIRE_SERVICES, SECRET_KEY

pytestmark = [pytest.mark.integration, pytest.mark.compat]

FRONTEND_VERSION = "0.71.10"
HERE = Path(__file__).parent
# The same override as tests/browser.py (FRESHTOKEN_TEST_CHROMIUM), then Debian's binary.
CHROMIUM_CANDIDATES = (
    os.environ.get("FRESHTOKEN_TEST_CHROMIUM", "/usr/bin/chromium"),
    "chromium",
    "chromium-browser",
)
NPM_INSTALL_TIMEOUT = 240
DRIVER_TIMEOUT = 240
KEY = "mock"
TOKEN_LIFETIME = 3600


def _missing(what: str) -> None:
    """Skip, or fail under FRESHTOKEN_REQUIRE_SERVICES=1."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} (FRESHTOKEN_REQUIRE_SERVICES=1)")
    pytest.skip(what)


def _tail(text: str | bytes | None, lines: int = 40) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium binary."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    _missing("Debian's chromium is needed for the browser test (apt-get install chromium)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned SDK and playwright-core installed with npm (cached by npm between runs)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are needed for the browser test")
    assert npm is not None
    folder = tmp_path_factory.mktemp("browser-sdk")
    shutil.copy(HERE / "package.json", folder / "package.json")
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    try:
        result = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--no-package-lock",
                "--ignore-scripts",  # playwright-core's would download browsers: never
                "--loglevel=error",
                "--prefix",
                str(folder),
            ],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _missing(f"npm install did not finish in {NPM_INSTALL_TIMEOUT} s")
        raise
    if result.returncode != 0:
        _missing(f"npm install failed:\n{_tail(result.stderr)}")
    installed = orjson.loads((folder / "node_modules/@nangohq/frontend/package.json").read_bytes())
    assert installed["version"] == FRONTEND_VERSION
    shutil.copy(HERE / "driver.mjs", folder / "driver.mjs")
    return folder


class _PageServer(ThreadingHTTPServer):
    daemon_threads = True
    page: bytes
    sdk_dir: Path


class _PageHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No request logging."""

    def do_GET(self) -> None:
        """``/`` is the app page; ``/sdk/<file>.js`` the SDK's dist files."""
        server: _PageServer = self.server  # type: ignore[assignment]
        path = self.path.split("?", 1)[0]
        body: bytes | None = None
        content_type = "text/html; charset=utf-8"
        if path == "/":
            body = server.page
        elif path.startswith("/sdk/") and path.endswith(".js") and "/.." not in path:
            file = server.sdk_dir / path[len("/sdk/") :]
            if file.is_file():
                body = file.read_bytes()
                content_type = "text/javascript; charset=utf-8"
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def page_url(node_dir: Path) -> Iterator[str]:
    """The app page (its own origin, like a customer's frontend)."""
    server = _PageServer(("127.0.0.1", 0), _PageHandler)
    server.page = (HERE / "page.html").read_bytes()
    server.sdk_dir = node_dir / "node_modules/@nangohq/frontend/dist"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def module_provider() -> Iterator[MockProvider]:
    """The mock OAuth provider shared by this module's tests (rotating refresh tokens)."""
    with MockProvider(MockProviderConfig(token_lifetime_seconds=TOKEN_LIFETIME)) as mock:
        yield mock


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live ``freshtoken api`` on SQLite, its public URL the address it listens on."""
    data_dir = tmp_path_factory.mktemp("browser-api")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    database_url = f"sqlite:///{(data_dir / 'freshtoken.db').as_posix()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    env.update(
        {
            "FRESHTOKEN_DATABASE_URL": database_url,
            "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
            "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "FRESHTOKEN_DATA_DIR": str(data_dir),
            "FRESHTOKEN_LOG_FORMAT": "json",
            "FRESHTOKEN_PUBLIC_URL": base_url,
        }
    )
    cli = [sys.executable, "-m", "freshtoken.cli"]
    migrated = subprocess.run(
        [*cli, "db", "upgrade"], env=env, capture_output=True, timeout=60, check=False
    )
    assert migrated.returncode == 0, _tail(migrated.stderr)
    log = data_dir / "api.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*cli, "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, _tail(log.read_bytes())
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, _tail(log.read_bytes())
            time.sleep(0.1)
        yield {"base_url": base_url, "database_url": database_url, "data_dir": data_dir}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def rest(api: dict[str, Any]) -> Iterator[httpx.Client]:
    """A REST client with the secret key."""
    with httpx.Client(
        base_url=api["base_url"], headers={"Authorization": f"Bearer {SECRET_KEY}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture(scope="module")
def session_token(rest: httpx.Client, module_provider: MockProvider) -> str:
    """The integration on the mock provider, and a connect session allowed to use it."""
    created = rest.post(
        "/integrations",
        json={
            "provider": "oauth2",
            "unique_key": KEY,
            "credentials": {
                "type": "OAUTH2",
                "client_id": module_provider.config.client_id,
                "client_secret": module_provider.config.client_secret,
                "scopes": "mock.read,mock.write",
            },
        },
    )
    assert created.status_code == 200, created.text
    session = rest.post(
        "/connect/sessions",
        json={
            "end_user": {"id": "browser-user", "email": "b@example.com"},
            "allowed_integrations": [KEY],
            "integrations_config_defaults": {
                KEY: {
                    "connection_config": {
                        "authorization_url": module_provider.url + "/authorize",
                        "token_url": module_provider.token_url,
                    }
                }
            },
        },
    )
    assert session.status_code == 201, session.text
    token: str = session.json()["data"]["token"]
    return token


@pytest.fixture(scope="module")
def api_key_session(rest: httpx.Client) -> str:
    """An API-key integration and a session allowed to use it (the popup-free route)."""
    created = rest.post("/integrations", json={"provider": "api-key", "unique_key": "keys"})
    assert created.status_code == 200, created.text
    session = rest.post(
        "/connect/sessions",
        json={"end_user": {"id": "browser-user"}, "allowed_integrations": ["keys"]},
    )
    assert session.status_code == 201, session.text
    token: str = session.json()["data"]["token"]
    return token


@pytest.fixture(scope="module")
def results(
    chromium: str,
    node_dir: Path,
    page_url: str,
    api: dict[str, Any],
    module_provider: MockProvider,
    session_token: str,
    api_key_session: str,
) -> dict[str, Any]:
    """Run every flow in one browser; the driver's results by flow name."""
    flows = [
        {"name": "success", "token": session_token, "key": KEY},
        {"name": "denied", "token": session_token, "key": KEY, "mock": {"deny_consent": True}},
        {"name": "bad_state", "token": session_token, "key": KEY, "mock": {"tamper_state": True}},
        {
            "name": "reused_code",
            "token": session_token,
            "key": KEY,
            "mock": {"reissue_used_code": True},
        },
        {
            "name": "wrong_verifier",
            "token": session_token,
            "key": KEY,
            "mock": {"corrupt_code_challenge": True},
        },
        {
            # No popup: the SDK POSTs the key cross-origin (CORS) to /api-auth/api-key.
            "name": "api_key",
            "token": api_key_session,
            "key": "keys",
            "options": {"credentials": {"apiKey": "browser-api-key-1"}},
        },
    ]
    payload = {
        "chromium": chromium,
        "pageUrl": page_url,
        "apiUrl": api["base_url"],
        "mockUrl": module_provider.url,
        "flows": flows,
    }
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(node_dir / "driver.mjs"), orjson.dumps(payload).decode()],
        cwd=node_dir,
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"driver failed:\n{_tail(done.stderr)}\n{_tail(done.stdout)}"
    out: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])["results"]
    return out


def test_auth_resolves_and_the_token_works(
    results: dict[str, Any], rest: httpx.Client, module_provider: MockProvider
) -> None:
    """auth() resolves {providerConfigKey, connectionId}; the stored token works at the provider."""
    success = results["success"]
    assert "ok" in success, success
    ok = success["ok"]
    assert ok["providerConfigKey"] == KEY
    assert ok["isPending"] is False
    # The popup went through the API, the provider's consent and back (paths only).
    popup = [u for u in success["popups"][0]["urls"] if u != "blank"]
    assert popup == [f"/oauth/connect/{KEY}", "/authorize", "/oauth/callback"], popup
    got = rest.get(f"/connections/{ok['connectionId']}", params={"provider_config_key": KEY})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["tags"]["end_user_id"] == "browser-user"
    token = body["credentials"]["access_token"]
    assert module_provider.is_access_token_valid(token)
    answer = httpx.get(
        module_provider.url + "/userinfo", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("flow", "error_type"),
    [
        ("denied", "callback_err"),
        ("bad_state", "state_err"),
        ("reused_code", "token_err"),
        ("wrong_verifier", "token_err"),
    ],
)
def test_failures_reject_with_nango_error_types(
    results: dict[str, Any], flow: str, error_type: str
) -> None:
    """Each failure rejects the SDK's promise with Nango's error type (never a timeout)."""
    outcome = results[flow]
    assert "error" in outcome, outcome
    assert outcome["error"]["type"] == error_type, outcome
    assert "mock-code-" not in outcome["error"]["message"]


def test_api_key_connection_without_a_popup(results: dict[str, Any], rest: httpx.Client) -> None:
    """auth() with credentials posts cross-origin and resolves; the key is stored."""
    outcome = results["api_key"]
    assert "ok" in outcome, outcome
    assert outcome["ok"]["providerConfigKey"] == "keys"
    assert outcome["popups"] == []
    got = rest.get(
        f"/connections/{outcome['ok']['connectionId']}", params={"provider_config_key": "keys"}
    )
    assert got.json()["credentials"] == {"type": "API_KEY", "apiKey": "browser-api-key-1"}


def test_failures_store_nothing(results: dict[str, Any], rest: httpx.Client) -> None:
    """Only the successful flow left a connection."""
    listed = rest.get("/connections", params={"integrationId": KEY}).json()["connections"]
    assert [c["connection_id"] for c in listed] == [results["success"]["ok"]["connectionId"]]


def test_the_scan_refreshes_the_new_connection_ahead_of_expiry(
    results: dict[str, Any], api: dict[str, Any], rest: httpx.Client, module_provider: MockProvider
) -> None:
    """The connection is on the proactive schedule at once: a scan at its due time refreshes it."""
    conn_id = results["success"]["ok"]["connectionId"]
    before = rest.get(f"/connections/{conn_id}", params={"provider_config_key": KEY}).json()
    expires = dt.datetime.fromisoformat(before["credentials"]["expires_at"].replace("Z", "+00:00"))
    settings = Settings(
        database_url=api["database_url"],
        data_dir=api["data_dir"],
        secret_key=SECRET_KEY,
        encryption_key=ENCRYPTION_KEY,
    )
    # Just inside the refresh lead (min(20 min, half the lifetime)), still before expiry.
    clock = FakeClock(expires - dt.timedelta(seconds=settings.refresh_lead_seconds - 5))
    runtime = build_runtime(settings, clock=clock)
    try:
        migrate.upgrade(runtime.engine)
        jobs: list[Job] = []
        RefreshScanner(runtime, jobs.append).scan()
        assert len(jobs) == 1, jobs
        result = runtime.refresher.refresh(  # type: ignore[attr-defined]
            jobs[0].connection_pk, trigger="scheduled", seen_version=jobs[0].seen_version
        )
        assert result.ok, result
    finally:
        runtime.close()
    after = rest.get(f"/connections/{conn_id}", params={"provider_config_key": KEY}).json()
    new_token = after["credentials"]["access_token"]
    assert new_token != before["credentials"]["access_token"]
    assert module_provider.is_access_token_valid(new_token)
