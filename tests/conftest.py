"""Shared fixtures: settings on a temporary SQLite file, a migrated runtime, an API client.

One meaning per name: ``runtime`` serves stored credentials as they are (no refresher),
``refresh_runtime`` has the refresh service, ``mock_provider`` is the default mock OAuth
provider, ``app`` the FastAPI app and ``client`` its authenticated test client. A module that
needs something else names it for what it is (``pg_runtime``, ``slow_provider``, ``celery_app``).

The keys are generated once per test session; ``SECRET_KEY`` is what ``client`` sends as its
bearer token. Tests that need PostgreSQL use ``pg_url`` (see tests/integration).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.settings import Settings
from tests.hostile import HostileProvider
from tests.support import AUTH_HEADERS, SECRET_KEY, make_runtime, make_settings, table_rows

TEST_CLIENT_SECRET = "client-secret-value"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

IntegrationFactory = Callable[..., str]


@pytest.fixture(scope="session")
def settings_factory() -> Callable[..., Settings]:
    """:func:`make_settings` (data dir, database URL, overrides) for tests building their own."""
    return make_settings


@pytest.fixture
def secret_key() -> str:
    """The API secret key the test settings use."""
    return SECRET_KEY


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a SQLite file in ``tmp_path``."""
    return make_settings(tmp_path, f"sqlite:///{(tmp_path / 'freshtoken.db').as_posix()}")


@pytest.fixture
def clock() -> FakeClock:
    """A frozen clock shared by the runtime (advance it to move time)."""
    return FakeClock()


@pytest.fixture
def runtime(settings: Settings, clock: FakeClock) -> Iterator[Runtime]:
    """A migrated runtime that serves stored credentials as they are (no refresher)."""
    rt = build_runtime(settings, clock=clock, with_refresher=False)
    migrate.upgrade(rt.engine)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def refresh_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A migrated SQLite runtime with the refresh service attached, on the real clock (its own
    database file: not ``runtime``'s)."""
    rt = make_runtime(make_settings(tmp_path))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def mock_provider() -> Iterator[MockProvider]:
    """The in-process mock OAuth provider (real HTTP on 127.0.0.1), default config: one-hour
    tokens, rotating refresh tokens, reuse detection."""
    with MockProvider() as mock:
        yield mock


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    """The API application over ``runtime``."""
    return create_app(runtime)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A test client that sends the secret key."""
    with TestClient(app, headers=AUTH_HEADERS) as test_client:
        yield test_client


@pytest.fixture
def anon_client(app: FastAPI) -> Iterator[TestClient]:
    """A test client without credentials; server exceptions become 500 responses."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_integration(runtime: Runtime) -> IntegrationFactory:
    """Create an integration straight in the store; returns its unique key."""

    def factory(
        unique_key: str = "oauth2-test",
        provider: str = "oauth2",
        *,
        client_id: str | None = "client-id",
        client_secret: str | None = TEST_CLIENT_SECRET,
        scopes: str | None = None,
        display_name: str | None = None,
    ) -> str:
        with runtime.store() as store:
            store.create_integration(
                unique_key=unique_key,
                provider=provider,
                display_name=display_name,
                client_id=client_id,
                client_secret=client_secret,
                scopes=scopes,
            )
        return unique_key

    return factory


OAUTH2_CREDENTIALS: dict[str, Any] = {
    "type": "OAUTH2",
    "access_token": "at-secret-0001",
    "refresh_token": "rt-secret-0001",
    "expires_at": "2030-01-01T00:00:00Z",
}


@pytest.fixture
def import_connection(client: TestClient) -> Callable[..., dict[str, Any]]:
    """POST /connections and return the response body (the integration must exist)."""

    def factory(
        connection_id: str = "conn-1",
        provider_config_key: str = "oauth2-test",
        credentials: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        body = {
            "provider_config_key": provider_config_key,
            "connection_id": connection_id,
            "credentials": credentials if credentials is not None else dict(OAUTH2_CREDENTIALS),
            **extra,
        }
        response = client.post("/connections", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    return factory


@pytest.fixture
def snapshot(runtime: Runtime) -> Callable[[], dict[str, list[tuple[Any, ...]]]]:
    """A function returning every stored row, for "nothing changed" assertions."""
    return lambda: table_rows(runtime.engine)


@pytest.fixture
def hostile() -> Iterator[HostileProvider]:
    """The hostile provider (tests/hostile.py): a real HTTP server on 127.0.0.1 that trickles
    bytes, sends huge bodies, echoes secrets, redirects and answers with control characters."""
    with HostileProvider() as provider:
        yield provider


# -- PostgreSQL ---------------------------------------------------------------------------------


def _require_services() -> bool:
    return os.environ.get("FRESHTOKEN_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the module.

    Skips when PostgreSQL is unreachable, unless FRESHTOKEN_REQUIRE_SERVICES=1 (then it fails).
    """
    base = os.environ.get("FRESHTOKEN_TEST_DATABASE_URL", DEFAULT_PG_URL)
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    schema = f"ft_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        reason = (
            f"PostgreSQL unreachable at {make_url(base).render_as_string()}: {type(exc).__name__}"
        )
        if _require_services():
            pytest.fail(reason)
        pytest.skip(reason)
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
