"""Nango's official Node SDK against a live ``freshtoken api``: the drop-in promise, end to end.

The SDK is ``@nangohq/node`` **0.71.10** (published 2026-09-21, the latest release when this
test was written), pinned exactly in ``tests/compat/package.json``. To move to a newer SDK, bump
the pin there, re-run this module and update ``SDK_VERSION`` below.

Flow: install the SDK once per session with npm into a temporary folder; migrate a SQLite file
with ``freshtoken db upgrade``; start ``freshtoken api`` on a free port; seed two integrations and
five connections through the REST API itself (two of them refresh at the in-process mock OAuth
provider); run ``tests/compat/sdk_driver.mjs``, which calls
the SDK and prints one JSON object; the tests below assert on that object with exact values.

Without node or npm (or when npm cannot install the SDK) the module is skipped, unless
``FRESHTOKEN_REQUIRE_SERVICES=1``, where it fails instead.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from tests.support import ENCRYPTION_KEY, REQUIRE_SERVICES, SECRET_KEY

pytestmark = pytest.mark.compat

SDK_VERSION = "0.71.10"
HERE = Path(__file__).parent
NPM_INSTALL_TIMEOUT = 180
DRIVER_TIMEOUT = 60

OAUTH_PCK = "sdk-oauth"
APIKEY_PCK = "sdk-apikey"
OAUTH_CONN = "acme.user@example.com"
OAUTH_CONN_2 = "conn-two"
APIKEY_CONN = "key-conn-1"
MOCK_PCK = "sdk-mock"
MOCK_EXPIRED = "mock-expired"
MOCK_FORCED = "mock-forced"
ACCESS_TOKEN = "at-sdk-0001"
REFRESH_TOKEN = "rt-sdk-0001"
API_KEY = "ak-sdk-0001"
EXPIRES_AT = "2099-01-01T00:00:00.000Z"
TOKEN_URL = "http://127.0.0.1:9/oauth/token"  # never called: the token is far from expiry
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")

# Nango's ApiPublicConnectionFull and the list item of GET /connections.
FULL_KEYS = {
    "id",
    "connection_id",
    "provider_config_key",
    "provider",
    "errors",
    "end_user",
    "tags",
    "metadata",
    "connection_config",
    "webhook_url_override",
    "created_at",
    "updated_at",
    "last_fetched_at",
    "credentials",
}
LIST_ITEM_KEYS = {
    "id",
    "connection_id",
    "provider_config_key",
    "provider",
    "errors",
    "end_user",
    "tags",
    "metadata",
    "created",
}


def _missing(what: str) -> None:
    """Skip, or fail under FRESHTOKEN_REQUIRE_SERVICES=1."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} (FRESHTOKEN_REQUIRE_SERVICES=1)")
    pytest.skip(what)


def _tail(text: str | bytes | None, lines: int = 30) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


# -- the SDK ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sdk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the pinned SDK installed and the driver script next to its node_modules."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are needed for the Nango SDK compatibility test")
    assert node is not None and npm is not None
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 20:
        _missing(f"@nangohq/node {SDK_VERSION} needs node >= 20 (found {version or 'none'})")
    folder = tmp_path_factory.mktemp("nango-sdk")
    shutil.copy(HERE / "package.json", folder / "package.json")
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    command = [
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--no-package-lock",
        "--ignore-scripts",
        "--loglevel=error",
        "--prefix",
        str(folder),
    ]
    try:
        result = subprocess.run(
            command,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _missing(f"npm install of @nangohq/node did not finish in {NPM_INSTALL_TIMEOUT} s")
        raise
    if result.returncode != 0:
        _missing(f"npm install of @nangohq/node failed:\n{_tail(result.stderr)}")
    installed = orjson.loads((folder / "node_modules/@nangohq/node/package.json").read_bytes())
    assert installed["version"] == SDK_VERSION
    # ES modules resolve bare imports from the importing file's folder: the driver goes there.
    shutil.copy(HERE / "sdk_driver.mjs", folder / "sdk_driver.mjs")
    return folder


# -- the server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(data_dir: Path) -> dict[str, str]:
    """The process environment without any inherited FRESHTOKEN_* setting, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    env.update(
        {
            "FRESHTOKEN_DATABASE_URL": f"sqlite:///{(data_dir / 'freshtoken.db').as_posix()}",
            "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
            "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "FRESHTOKEN_DATA_DIR": str(data_dir),
            "FRESHTOKEN_LOG_FORMAT": "json",
        }
    )
    return env


def _wait_healthy(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"freshtoken api exited with {proc.returncode}:\n{_tail(log.read_bytes())}"
            )
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"freshtoken api did not become healthy:\n{_tail(log.read_bytes())}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A migrated SQLite database and a live ``freshtoken api`` on a free port."""
    data_dir = tmp_path_factory.mktemp("compat-api")
    env = _server_env(data_dir)
    cli = [sys.executable, "-m", "freshtoken.cli"]
    migrated = subprocess.run(
        [*cli, "db", "upgrade"], env=env, capture_output=True, timeout=60, check=False
    )
    assert migrated.returncode == 0, _tail(migrated.stderr)
    port = _free_port()
    log = data_dir / "api.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*cli, "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, proc, log)
        yield {"base_url": base_url, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _post(client: httpx.Client, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == status, f"POST {path}: {response.status_code} {response.text}"
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture(scope="module")
def module_provider() -> Iterator[MockProvider]:
    """The mock OAuth provider shared by this module's tests (rotation, reuse detection)."""
    mock = MockProvider(MockProviderConfig(rotate_refresh_tokens=True, reuse_detection=True))
    mock.start()
    try:
        yield mock
    finally:
        mock.stop()


@pytest.fixture(scope="module")
def seeded(server: dict[str, Any], module_provider: MockProvider) -> dict[str, Any]:
    """Three integrations and five connections, created through the REST API."""
    with httpx.Client(
        base_url=server["base_url"],
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
        timeout=10,
    ) as client:
        _post(
            client,
            "/integrations",
            {
                "provider": "oauth2",
                "unique_key": OAUTH_PCK,
                "credentials": {
                    "type": "OAUTH2",
                    "client_id": "sdk-client",
                    "client_secret": "sdk-client-secret",
                },
            },
            200,
        )
        _post(client, "/integrations", {"provider": "api-key", "unique_key": APIKEY_PCK}, 200)

        def oauth2(connection_id: str, suffix: str, **extra: Any) -> dict[str, Any]:
            return _post(
                client,
                "/connections",
                {
                    "provider_config_key": OAUTH_PCK,
                    "connection_id": connection_id,
                    "connection_config": {"token_url": TOKEN_URL},
                    "credentials": {
                        "type": "OAUTH2",
                        "access_token": f"at-sdk-{suffix}",
                        "refresh_token": f"rt-sdk-{suffix}",
                        "expires_at": "2099-01-01T00:00:00Z",
                    },
                    **extra,
                },
                201,
            )

        first = oauth2(OAUTH_CONN, "0001", tags={"team": "blue"}, metadata={"seeded": True})
        second = oauth2(OAUTH_CONN_2, "0002", tags={"team": "green"})
        api_key = _post(
            client,
            "/connections",
            {
                "provider_config_key": APIKEY_PCK,
                "connection_id": APIKEY_CONN,
                "credentials": {"type": "API_KEY", "apiKey": API_KEY},
            },
            201,
        )
        _post(
            client,
            "/integrations",
            {
                "provider": "oauth2",
                "unique_key": MOCK_PCK,
                "credentials": {
                    "type": "OAUTH2",
                    "client_id": module_provider.config.client_id,
                    "client_secret": module_provider.config.client_secret,
                },
            },
            200,
        )
        families: dict[str, dict[str, Any]] = {}
        # Expired a minute ago (due on any read), and valid for an hour (only a forced read
        # refreshes it).
        for connection_id, lifetime in ((MOCK_EXPIRED, -60), (MOCK_FORCED, 3600)):
            family = module_provider.seed(lifetime_seconds=max(lifetime, 0))
            expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lifetime)
            _post(
                client,
                "/connections",
                {
                    "provider_config_key": MOCK_PCK,
                    "connection_id": connection_id,
                    "connection_config": {"token_url": module_provider.token_url},
                    "credentials": {
                        "type": "OAUTH2",
                        "access_token": family["access_token"],
                        "refresh_token": family["refresh_token"],
                        "expires_at": expires_at.isoformat(),
                    },
                },
                201,
            )
            families[connection_id] = family
    ids = {OAUTH_CONN: first["id"], OAUTH_CONN_2: second["id"], APIKEY_CONN: api_key["id"]}
    return {"ids": ids, "families": families}


@pytest.fixture(scope="module")
def observed(sdk_dir: Path, server: dict[str, Any], seeded: dict[str, Any]) -> dict[str, Any]:
    """Run the driver once; its JSON output (``results``, ``requests``, ``sdkVersion``)."""
    node = shutil.which("node")
    assert node is not None  # sdk_dir skipped otherwise
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(sdk_dir)),
        "NO_PROXY": "*",  # axios honours *_PROXY variables; none is passed, and none applies
        "FT_HOST": server["base_url"],
        "FT_SECRET_KEY": SECRET_KEY,
        "FT_OAUTH_PCK": OAUTH_PCK,
        "FT_OAUTH_CONN": OAUTH_CONN,
        "FT_OAUTH_CONN_2": OAUTH_CONN_2,
        "FT_APIKEY_PCK": APIKEY_PCK,
        "FT_APIKEY_CONN": APIKEY_CONN,
        "FT_MOCK_PCK": MOCK_PCK,
        "FT_MOCK_EXPIRED": MOCK_EXPIRED,
        "FT_MOCK_FORCED": MOCK_FORCED,
    }
    result = subprocess.run(
        [node, "sdk_driver.mjs"],
        cwd=sdk_dir,
        env=env,
        capture_output=True,
        timeout=DRIVER_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"driver exited with {result.returncode}:\n{_tail(result.stderr)}\n"
        f"api log:\n{_tail(server['log'].read_bytes())}"
    )
    output: dict[str, Any] = orjson.loads(result.stdout)
    output["ids"] = seeded["ids"]
    output["families"] = seeded["families"]
    return output


def ok(observed: dict[str, Any], step: str) -> Any:
    """The value a driver step returned (fails with the recorded error otherwise)."""
    outcome = observed["results"][step]
    assert outcome["ok"], f"{step} failed: {outcome['error']}"
    return outcome["value"]


def failed(observed: dict[str, Any], step: str) -> dict[str, Any]:
    """The error a driver step raised (fails if it succeeded)."""
    outcome = observed["results"][step]
    assert not outcome["ok"], f"{step} unexpectedly succeeded: {outcome['value']}"
    error: dict[str, Any] = outcome["error"]
    return error


# -- the tests ----------------------------------------------------------------------------------


def test_the_pinned_sdk_version_ran(observed: dict[str, Any]) -> None:
    assert observed["sdkVersion"] == SDK_VERSION


def test_get_connection_returns_nangos_full_shape_without_the_refresh_token(
    observed: dict[str, Any],
) -> None:
    conn = ok(observed, "getConnection")
    assert set(conn) == FULL_KEYS
    assert conn["id"] == observed["ids"][OAUTH_CONN]
    assert conn["connection_id"] == OAUTH_CONN
    assert conn["provider_config_key"] == OAUTH_PCK
    assert conn["provider"] == "oauth2"
    assert conn["errors"] == []
    assert conn["end_user"] is None
    assert conn["tags"] == {"team": "blue"}
    assert conn["metadata"] == {"seeded": True}
    assert conn["connection_config"] == {"token_url": TOKEN_URL}
    assert conn["webhook_url_override"] is None
    for stamp in ("created_at", "updated_at", "last_fetched_at"):
        assert ISO_UTC.match(conn[stamp]), (stamp, conn[stamp])
    assert conn["credentials"] == {
        "type": "OAUTH2",
        "access_token": ACCESS_TOKEN,
        "expires_at": EXPIRES_AT,
        "raw": {"access_token": ACCESS_TOKEN, "expires_at": EXPIRES_AT},
    }


def test_get_connection_with_refresh_token_true_includes_it(observed: dict[str, Any]) -> None:
    conn = ok(observed, "getConnectionWithRefreshToken")
    assert set(conn) == FULL_KEYS
    assert conn["credentials"] == {
        "type": "OAUTH2",
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "expires_at": EXPIRES_AT,
        "raw": {
            "access_token": ACCESS_TOKEN,
            "refresh_token": REFRESH_TOKEN,
            "expires_at": EXPIRES_AT,
        },
    }


def test_get_token_and_raw_token_response(observed: dict[str, Any]) -> None:
    assert ok(observed, "getToken") == ACCESS_TOKEN  # OAUTH2: the access token string itself
    assert ok(observed, "getRawTokenResponse") == {
        "access_token": ACCESS_TOKEN,
        "expires_at": EXPIRES_AT,
    }


def test_api_key_connection(observed: dict[str, Any]) -> None:
    conn = ok(observed, "getConnectionApiKey")
    assert set(conn) == FULL_KEYS
    assert conn["id"] == observed["ids"][APIKEY_CONN]
    assert (conn["connection_id"], conn["provider_config_key"], conn["provider"]) == (
        APIKEY_CONN,
        APIKEY_PCK,
        "api-key",
    )
    assert conn["credentials"] == {"type": "API_KEY", "apiKey": API_KEY}
    # getToken returns the whole credentials object for anything but OAUTH1/OAUTH2.
    assert ok(observed, "getTokenApiKey") == {"type": "API_KEY", "apiKey": API_KEY}


def _ids_of(listing: Any) -> list[str]:
    assert set(listing) == {"connections"}
    for item in listing["connections"]:
        assert set(item) == LIST_ITEM_KEYS, item  # never credentials
        assert ISO_UTC.match(item["created"]), item["created"]
    return [item["connection_id"] for item in listing["connections"]]


def test_list_connections_newest_first_without_credentials(observed: dict[str, Any]) -> None:
    listing = ok(observed, "listConnections")
    assert _ids_of(listing) == [MOCK_FORCED, MOCK_EXPIRED, APIKEY_CONN, OAUTH_CONN_2, OAUTH_CONN]
    by_id = {item["connection_id"]: item for item in listing["connections"]}
    assert by_id[OAUTH_CONN] == {
        "id": observed["ids"][OAUTH_CONN],
        "connection_id": OAUTH_CONN,
        "provider_config_key": OAUTH_PCK,
        "provider": "oauth2",
        "errors": [],
        "end_user": None,
        "tags": {"team": "blue"},
        "metadata": {"seeded": True},
        "created": by_id[OAUTH_CONN]["created"],
    }
    assert by_id[APIKEY_CONN]["provider"] == "api-key"
    assert by_id[APIKEY_CONN]["metadata"] is None


def test_list_connections_filters(observed: dict[str, Any]) -> None:
    assert _ids_of(ok(observed, "listConnectionsById")) == [OAUTH_CONN]
    assert _ids_of(ok(observed, "listConnectionsLegacyById")) == [OAUTH_CONN]
    assert _ids_of(ok(observed, "listConnectionsByTag")) == [OAUTH_CONN]
    assert _ids_of(ok(observed, "listConnectionsByIntegration")) == [APIKEY_CONN]
    assert ok(observed, "listConnectionsNoMatch") == {"connections": []}


def test_integrations(observed: dict[str, Any]) -> None:
    configs = ok(observed, "listIntegrations")["configs"]  # the SDK's legacy wrapping of data
    assert sorted((c["unique_key"], c["provider"]) for c in configs) == [
        (APIKEY_PCK, "api-key"),
        (MOCK_PCK, "oauth2"),
        (OAUTH_PCK, "oauth2"),
    ]
    for config in configs:
        assert "credentials" not in config
    data = ok(observed, "getIntegration")["data"]
    assert (data["unique_key"], data["provider"]) == (OAUTH_PCK, "oauth2")
    assert "credentials" not in data


def test_set_metadata_replaces_and_update_metadata_merges(observed: dict[str, Any]) -> None:
    assert ok(observed, "getMetadataSeeded") == {"seeded": True}
    assert ok(observed, "setMetadata") == {
        "status": 201,
        "data": {
            "connection_id": OAUTH_CONN,
            "provider_config_key": OAUTH_PCK,
            "metadata": {"plan": "pro", "limits": {"seats": 5}},
        },
    }
    assert ok(observed, "getMetadataAfterSet") == {"plan": "pro", "limits": {"seats": 5}}
    assert ok(observed, "updateMetadata") == {
        "status": 200,
        "data": {
            "connection_id": OAUTH_CONN,
            "provider_config_key": OAUTH_PCK,
            "metadata": {"region": "eu", "limits": {"seats": 9}},
        },
    }
    # Shallow merge: top-level keys kept or overwritten, nested objects replaced whole.
    assert ok(observed, "getMetadataAfterUpdate") == {
        "plan": "pro",
        "limits": {"seats": 9},
        "region": "eu",
    }


def test_metadata_for_many_connections_is_all_or_nothing(observed: dict[str, Any]) -> None:
    assert ok(observed, "setMetadataMany") == {
        "status": 201,
        "data": {
            "connection_id": [OAUTH_CONN, OAUTH_CONN_2],
            "provider_config_key": OAUTH_PCK,
            "metadata": {"bulk": True},
        },
    }
    assert ok(observed, "getMetadataManyFirst") == {"bulk": True}
    assert ok(observed, "getMetadataManySecond") == {"bulk": True}
    error = failed(observed, "updateMetadataUnknown")
    assert error["status"] == 404
    assert error["data"]["error"]["code"] == "unknown_connection"
    assert error["data"]["error"]["message"] == (
        f"Connection with connection id no-such-connection and provider config key {OAUTH_PCK} "
        "not found. Please make sure the connection exists. No actions were taken on any of the "
        "connections as a result of this failure."
    )
    assert ok(observed, "getMetadataAfterUnknown") == {"bulk": True}  # nothing was merged


def test_patch_connection_tags(observed: dict[str, Any]) -> None:
    assert ok(observed, "patchConnection") == {"success": True}
    assert _ids_of(ok(observed, "listConnectionsByTagAfterPatch")) == [OAUTH_CONN_2]


def test_delete_connection_then_reads_are_404_not_found(observed: dict[str, Any]) -> None:
    assert ok(observed, "deleteConnection") == {"status": 200, "data": {"success": True}}
    for step in ("getConnectionAfterDelete", "getTokenAfterDelete"):
        error = failed(observed, step)
        assert error["isAxiosError"] is True
        assert error["status"] == 404, step
        assert error["data"] == {
            "error": {"code": "not_found", "message": "Failed to find connection"}
        }, step
    # Nango's code answers 400 here; its spec documents 404, which freshtoken follows.
    again = failed(observed, "deleteConnectionAgain")
    assert again["status"] == 404
    assert again["data"]["error"]["code"] == "unknown_connection"
    assert _ids_of(ok(observed, "listConnectionsAfterDelete")) == [
        MOCK_FORCED,
        MOCK_EXPIRED,
        APIKEY_CONN,
        OAUTH_CONN,
    ]


def test_get_token_refreshes_an_expired_token(
    observed: dict[str, Any], module_provider: MockProvider
) -> None:
    seeded = observed["families"][MOCK_EXPIRED]
    token = ok(observed, "getTokenExpired")
    assert isinstance(token, str)
    assert token != seeded["access_token"]
    assert module_provider.is_access_token_valid(token)
    assert module_provider.current_refresh_token(seeded["refresh_token"]) not in (
        None,
        seeded["refresh_token"],
    )  # rotated once, family alive (no reuse detected)


def test_force_refresh_through_the_sdk(
    observed: dict[str, Any], module_provider: MockProvider
) -> None:
    seeded = observed["families"][MOCK_FORCED]
    forced = ok(observed, "getConnectionForced")
    new_token = forced["credentials"]["access_token"]
    assert new_token != seeded["access_token"]
    assert module_provider.is_access_token_valid(new_token)
    assert "refresh_token" not in forced["credentials"]
    assert "refresh_token" not in forced["credentials"]["raw"]
    after = ok(observed, "getConnectionForcedAfter")  # no force: the fresh token is served
    assert after["credentials"]["access_token"] == new_token
    rotated = module_provider.current_refresh_token(seeded["refresh_token"])
    assert rotated not in (None, seeded["refresh_token"])
    assert after["credentials"]["refresh_token"] == rotated
    stats = module_provider.stats()
    assert stats["refresh_calls"] == 2  # one per connection: nothing refreshed twice
    assert stats["invalid_grant"] == 0


def test_unknown_integration_and_unknown_connection(observed: dict[str, Any]) -> None:
    error = failed(observed, "getConnectionUnknownIntegration")
    assert error["status"] == 400
    assert error["data"] == {
        "error": {"code": "unknown_provider_config", "message": "Provider does not exist"}
    }
    error = failed(observed, "getConnectionUnknownConnection")
    assert error["status"] == 404
    assert error["data"]["error"]["code"] == "not_found"


def test_wrong_secret_key_is_401(observed: dict[str, Any]) -> None:
    for step in ("getConnectionWrongKey", "listConnectionsWrongKey"):
        error = failed(observed, step)
        assert error["status"] == 401, step
        assert error["data"]["error"]["code"] == "unknown_account", step
        assert ACCESS_TOKEN not in orjson.dumps(error["data"]).decode()


def test_sdk_checks_arguments_locally(observed: dict[str, Any]) -> None:
    error = failed(observed, "getMetadataMissingArgument")
    assert error == {"message": "Connection Id is required"}  # not an HTTP error


def test_the_sdk_used_the_current_routes(observed: dict[str, Any]) -> None:
    requests: list[str] = observed["requests"]
    assert requests[0] == (
        f"GET /connections/{OAUTH_CONN}?provider_config_key={OAUTH_PCK}"
        "&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false"
    )
    assert requests[1] == (
        f"GET /connections/{OAUTH_CONN}?provider_config_key={OAUTH_PCK}"
        "&force_refresh=false&refresh_token=true&refresh_github_app_jwt_token=false"
    )
    assert "GET /connections?tags%5Bteam%5D=blue" in requests
    assert "POST /connections/metadata" in requests
    assert "PATCH /connections/metadata" in requests
    assert f"DELETE /connections/{OAUTH_CONN_2}?provider_config_key={OAUTH_PCK}" in requests
    assert not [r for r in requests if r.split(" ", 1)[1].startswith("/connection/")]
