"""`freshtoken connect` prints a working connect link; the demo makes a connection via the flow."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from tests.support import ENCRYPTION_KEY, SECRET_KEY, make_runtime, make_settings

from freshtoken.api.app import create_app
from freshtoken.cli import main
from freshtoken.mockprovider import MockProvider
from freshtoken.worker.embedded import _start_demo


@pytest.fixture(autouse=True)
def _quiet_httpx() -> Iterator[None]:
    """httpx logs every URL it requests; callback URLs carry authorization codes."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a CLI run on a SQLite file in tmp_path."""
    values = {
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_DATABASE_URL": f"sqlite:///{tmp_path.as_posix()}/test.db",
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "FRESHTOKEN_LOG_LEVEL": "WARNING",
        "FRESHTOKEN_PUBLIC_URL": "http://127.0.0.1:3999",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_connect_prints_a_link_that_creates_the_connection(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The printed link starts the flow for that id; after consent the connection exists."""
    runtime = make_runtime(make_settings(tmp_path, public_url="http://127.0.0.1:3999"))
    with MockProvider() as provider:
        with runtime.store() as store:
            store.create_integration(
                unique_key="mock",
                provider="oauth2",
                client_id=provider.config.client_id,
                client_secret=provider.config.client_secret,
            )
        result = CliRunner().invoke(
            main,
            [
                "connect",
                "mock",
                "ops-made",
                "--param",
                f"authorization_url={provider.url}/authorize",
                "--param",
                f"token_url={provider.token_url}",
            ],
            env=env,
        )
        assert result.exit_code == 0, result.output
        link = result.stdout.strip().splitlines()[-1]
        assert link.startswith("http://127.0.0.1:3999/oauth/connect/mock?connect_session_token=")
        with TestClient(create_app(runtime)) as browser:
            start = browser.get(link.removeprefix("http://127.0.0.1:3999"), follow_redirects=False)
            assert start.status_code == 302, start.text
            consent = httpx.get(start.headers["location"], follow_redirects=False)
            back = urlsplit(consent.headers["location"])
            page = browser.get(f"{back.path}?{back.query}")
        assert page.status_code == 200, page.text
        with runtime.store() as store:
            conn = store.get_connection("mock", "ops-made")
            assert conn is not None
            assert provider.is_access_token_valid(store.credentials(conn)["access_token"])
    runtime.close()


def test_connect_refuses_unknown_and_non_oauth2_integrations(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A missing integration or one that is not OAUTH2 is a one-line error, exit 2."""
    runtime = make_runtime(make_settings(tmp_path))
    with runtime.store() as store:
        store.create_integration(unique_key="keys", provider="api-key")
    runtime.close()
    missing = CliRunner().invoke(main, ["connect", "nope", "c1"], env=env)
    assert missing.exit_code == 2 and "no integration" in missing.output
    wrong = CliRunner().invoke(main, ["connect", "keys", "c1"], env=env)
    assert wrong.exit_code == 2 and "not OAUTH2" in wrong.output
    bad = CliRunner().invoke(main, ["connect", "keys", "c1", "--param", "novalue"], env=env)
    assert bad.exit_code == 2


def test_demo_makes_a_connection_through_the_flow(tmp_path: Path) -> None:
    """`make demo` (dev --demo) has `demo-connected`, created by the authorization flow."""
    runtime = make_runtime(make_settings(tmp_path))
    provider = _start_demo(runtime)
    try:
        with runtime.store() as store:
            conn = store.get_connection("demo", "demo-connected")
            assert conn is not None
            credentials = store.credentials(conn)
            assert provider.is_access_token_valid(credentials["access_token"])
            assert conn.next_refresh_at is not None
            assert provider.stats()["authorization_code_calls"] == 1
    finally:
        provider.stop()
        runtime.close()


def test_api_command_makes_its_address_the_default_public_url(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`freshtoken api --port N` without FRESHTOKEN_PUBLIC_URL: redirects go to that port."""
    import socket

    import freshtoken.cli as cli
    from freshtoken.bootstrap import settings_from_env

    make_runtime(make_settings(tmp_path)).close()  # the schema the command checks for
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("FRESHTOKEN_PUBLIC_URL")
    # The command writes these to os.environ (for its workers): setenv makes the test undo it.
    monkeypatch.setenv("FRESHTOKEN_API_PORT", "3003")
    monkeypatch.setenv("FRESHTOKEN_API_HOST", "127.0.0.1")
    monkeypatch.setattr(cli, "_serve", lambda _server, sock: sock.close())
    environment = {k: v for k, v in env.items() if k != "FRESHTOKEN_PUBLIC_URL"}
    result = CliRunner().invoke(main, ["api", "--port", str(port)], env=environment)
    assert result.exit_code == 0, result.output
    assert settings_from_env().resolved_public_url == f"http://127.0.0.1:{port}"
