"""Ciphertexts bound to where a secret goes and whose it is (issue 10, row 4).

Someone with write access to the database changes the clear-text columns around a ciphertext:
points token_url at their own server, renames a connection, swaps an integration's provider.
The row must fail closed (a clear error and a log line), never be served and never be refreshed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from structlog.testing import capture_logs
from tests.hostile import HostileProvider
from tests.support import ENCRYPTION_KEY, SECRET_KEY, make_runtime, make_settings

from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.crypto import aad_for
from freshtoken.keyrotation import pending_count
from freshtoken.runtime import Runtime
from freshtoken.store.credentials import iso
from freshtoken.store.models import Connection, Integration

CLIENT_SECRET = "cs-bound-Secret-5521"
REFRESH_TOKEN = "rt-bound-Secret-8812"


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with the refresh engine, an integration "hp" and an expired connection "c1"
    whose token_url is the legitimate (here: also local) provider."""
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    runtime = make_runtime(make_settings(tmp_path), clock=clock)
    with runtime.store() as store:
        integration = store.create_integration(
            unique_key="hp", provider="oauth2", client_id="cid", client_secret=CLIENT_SECRET
        )
        store.upsert_connection(
            integration,
            connection_id="c1",
            credentials={
                "type": "OAUTH2",
                "access_token": "at-bound-old",
                "refresh_token": REFRESH_TOKEN,
                "expires_at": iso(clock.now() - dt.timedelta(seconds=5)),
            },
            connection_config={"token_url": "http://127.0.0.1:9/legit-token"},
        )
    yield runtime
    runtime.close()


def _client(runtime: Runtime) -> TestClient:
    return TestClient(
        create_app(runtime),
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
        raise_server_exceptions=False,
    )


def _sql(runtime: Runtime, statement: Any) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(statement)


def _assert_fails_closed(response: Any, logs: list[dict[str, Any]]) -> None:
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "integrity_check_failed"
    for secret in ("at-bound-old", REFRESH_TOKEN, CLIENT_SECRET):
        assert secret not in response.text
    assert any(e["event"] == "credentials.integrity_failed" for e in logs)


def test_token_url_pointed_elsewhere_fails_closed(rt: Runtime, hostile: HostileProvider) -> None:
    """connection_config.token_url changed in the database: no request reaches the new URL."""
    _sql(rt, update(Connection).values(connection_config={"token_url": hostile.url}))
    with capture_logs() as logs, _client(rt) as client:
        response = client.get("/connections/c1", params={"provider_config_key": "hp"})
        forced = client.post("/connections/c1/refresh", params={"provider_config_key": "hp"})
    _assert_fails_closed(response, logs)
    assert forced.status_code == 500
    assert hostile.received == []


def test_renamed_connection_is_not_served(rt: Runtime) -> None:
    """connection_id renamed in the database: the credentials are not served under the new id."""
    _sql(rt, update(Connection).values(connection_id="victim"))
    with capture_logs() as logs, _client(rt) as client:
        response = client.get("/connections/victim", params={"provider_config_key": "hp"})
    _assert_fails_closed(response, logs)


def test_provider_swapped_fails_closed(rt: Runtime) -> None:
    """connections.provider changed (another provider means another token URL)."""
    _sql(rt, update(Connection).values(provider="okta"))
    with capture_logs() as logs, _client(rt) as client:
        response = client.get("/connections/c1", params={"provider_config_key": "hp"})
    _assert_fails_closed(response, logs)


def test_integration_provider_swapped_keeps_the_client_secret(rt: Runtime) -> None:
    """integrations.provider changed: the client secret is not decrypted for the new provider."""
    _sql(rt, update(Integration).values(provider="okta"))
    with capture_logs() as logs, _client(rt) as client:
        response = client.get("/integrations/hp", params={"include": "credentials"})
    _assert_fails_closed(response, logs)


def test_legitimate_changes_keep_rows_readable(rt: Runtime) -> None:
    """An override with a new connection_config and an integration rename through the API
    re-encrypt the rows, which stay readable (credentials and client secret)."""
    with _client(rt) as client:
        body = {
            "provider_config_key": "hp",
            "connection_id": "c1",
            "credentials": {"type": "OAUTH2", "access_token": "at-2", "refresh_token": "rt-2"},
            "connection_config": {"token_url": "http://127.0.0.1:9/new-legit"},
        }
        assert client.post("/connections", json=body).status_code == 201
        renamed = client.patch("/integrations/hp", json={"unique_key": "hp2"})
        assert renamed.status_code == 200, renamed.text
        got = client.get("/connections/c1", params={"provider_config_key": "hp2"})
        assert got.status_code == 200, got.text
        assert got.json()["credentials"]["access_token"] == "at-2"
        integ = client.get("/integrations/hp2", params={"include": "credentials"})
        assert integ.status_code == 200
        assert CLIENT_SECRET in integ.text


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    """The CLI configures logging; put pytest's handlers and registered secrets back after."""
    import logging

    import structlog

    from freshtoken import logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    config = structlog.get_config()
    registered = set(logs._registered)
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.configure(**config)
    logs._registered.clear()
    logs._registered.update(registered)


@pytest.mark.usefixtures("_restore_logging")
def test_db_upgrade_migrates_v1_rows_to_bound_ones(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written before binding (v1) are read, `freshtoken db upgrade` rewrites them bound
    (v2) through the rotation machinery, and after that a tampered token_url fails closed."""
    cipher = rt.cipher
    with rt.store() as store:
        conn = store.get_connection("hp", "c1")
        integ = store.get_integration("hp")
        assert conn is not None and integ is not None
        creds = store.credentials(conn)
        conn.credentials_enc = cipher.encrypt_json(
            creds, aad_for("connections", conn.id, "credentials")
        )
        integ.client_secret_enc = cipher.encrypt(
            CLIENT_SECRET.encode(), aad_for("integrations", integ.id, "client_secret")
        )
    assert pending_count(rt) == 2
    with rt.store() as store:
        conn = store.get_connection("hp", "c1")
        assert conn is not None and store.credentials(conn) == creds  # v1 still reads
    for name in ("FRESHTOKEN_REDIS_URL", "FRESHTOKEN_PROVIDERS_FILE", "FRESHTOKEN_ENV"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "FRESHTOKEN_DATABASE_URL": rt.settings.resolved_database_url,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(_cli(), ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 connection(s) and 1 integration secret(s)" in result.output
    assert pending_count(rt) == 0
    with rt.engine.connect() as c:
        stored = [r[0] for r in c.execute(text("SELECT credentials_enc FROM connections"))]
    assert all(s.startswith("v2.") for s in stored)
    _sql(rt, update(Connection).values(connection_config={"token_url": "http://evil.example/"}))
    with capture_logs() as logs, _client(rt) as client:
        response = client.get("/connections/c1", params={"provider_config_key": "hp"})
    _assert_fails_closed(response, logs)
    json.dumps(logs, default=str)  # the log lines are plain data


def _cli() -> Any:
    from freshtoken.cli import main

    return main
