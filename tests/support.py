"""Builders shared by the refresh, worker and end-to-end tests (plain functions, no fixtures)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, create_engine, text

from freshtoken import migrate
from freshtoken.clock import Clock
from freshtoken.mockprovider import MockProvider
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.settings import Settings, generate_key, generate_secret_key
from freshtoken.store.credentials import iso

# One pair of keys per test session, shared by conftest's fixtures and these builders (and checked
# by the session-wide leak check, tests/leakcheck.py).
SECRET_KEY = generate_secret_key()
ENCRYPTION_KEY = generate_key()

PG_URL = os.environ.get(
    "FRESHTOKEN_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("FRESHTOKEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("FRESHTOKEN_REQUIRE_SERVICES") == "1"
# What an API test client sends: the session's secret key.
AUTH_HEADERS = {"Authorization": f"Bearer {SECRET_KEY}"}


def make_settings(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    """The one test settings builder: SQLite under ``data_dir`` unless a URL is given.

    Fixed session keys; no Redis and no providers file unless given (nothing is read from the
    environment); short HTTP and lock timeouts so a stuck call fails the test fast; JSON logs.
    """
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url or f"sqlite:///{data_dir.as_posix()}/test.db",
        "secret_key": SECRET_KEY,
        "encryption_key": ENCRYPTION_KEY,
        "redis_url": None,
        "providers_file": None,
        "http_connect_timeout": 2.0,
        "http_read_timeout": 5.0,
        "lock_ttl_seconds": 10.0,
        "lock_wait_seconds": 8.0,
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(**values)


def make_runtime(settings: Settings, clock: Clock | None = None, **kwargs: Any) -> Runtime:
    """A migrated runtime with the refresh service attached."""
    runtime = build_runtime(settings, clock=clock, **kwargs)
    migrate.upgrade(runtime.engine)
    return runtime


def require_service(name: str, reachable: bool) -> None:
    """Skip when a service is missing, or fail when FRESHTOKEN_REQUIRE_SERVICES=1 (CI)."""
    if reachable:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{name} is required (FRESHTOKEN_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{name} not reachable")


def pg_schema_url() -> str:
    """A PostgreSQL URL on a fresh, empty schema of its own (dropped with the test database)."""
    try:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception:
        require_service("PostgreSQL", reachable=False)
        raise
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def redis_client() -> Any:
    """A client for the test Redis database (flushed), or skip/fail."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        require_service("Redis", reachable=False)
    client.flushdb()
    return client


def add_oauth2_connection(
    runtime: Runtime,
    provider: MockProvider,
    *,
    connection_id: str | None = None,
    lifetime_seconds: float = 3600,
    expires_in: float | None = None,
    integration_key: str = "mock",
    provider_name: str = "oauth2",
) -> tuple[int, dict[str, Any]]:
    """Seed a token family at the mock provider and import it as an OAUTH2 connection."""
    family = provider.seed(lifetime_seconds=lifetime_seconds)
    now = runtime.clock.now()
    left = lifetime_seconds if expires_in is None else expires_in
    credentials = {
        "type": "OAUTH2",
        "access_token": family["access_token"],
        "refresh_token": family["refresh_token"],
        "expires_at": iso(now + dt.timedelta(seconds=left)),
        "raw": {},
    }
    with runtime.store() as store:
        integration = store.get_integration(integration_key) or store.create_integration(
            unique_key=integration_key,
            provider=provider_name,
            client_id=provider.config.client_id,
            client_secret=provider.config.client_secret,
        )
        conn, _ = store.upsert_connection(
            integration,
            connection_id=connection_id or f"conn-{uuid.uuid4().hex[:8]}",
            credentials=credentials,
            connection_config={"token_url": provider.token_url},
        )
        if expires_in is not None:
            # Pretend the token was issued lifetime_seconds before its (earlier) expiry.
            conn.last_refresh_success = (
                now + dt.timedelta(seconds=left) - dt.timedelta(seconds=lifetime_seconds)
            )
            conn.next_refresh_at = runtime.plan_next_refresh(conn)
        pk = conn.id
    return pk, family


def add_fake_connections(
    rt: Runtime,
    count: int,
    *,
    expires_in: float | None,
    lifetime: float = 3600,
    provider: str = "oauth2",
    credentials: dict[str, Any] | None = None,
    prefix: str | None = None,
) -> list[int]:
    """Import ``count`` OAUTH2 connections with fake tokens in one transaction (for tests that
    never call a provider: the scan, its claims and plans); each token was issued ``lifetime``
    ago and expires in ``expires_in`` seconds (None: a refresh token without an expiry).
    """
    now = rt.clock.now()
    expires_at = None if expires_in is None else now + dt.timedelta(seconds=expires_in)
    pks: list[int] = []
    with rt.store() as store:
        key = f"{provider}-int"
        integration = store.get_integration(key) or store.create_integration(
            unique_key=key, provider=provider, client_id="cid", client_secret="csecret"
        )
        for i in range(count):
            creds = dict(
                credentials
                or {"type": "OAUTH2", "access_token": f"at-{i}", "refresh_token": f"rt-{i}"}
            )
            if expires_at is not None and creds.get("type") == "OAUTH2":
                creds["expires_at"] = iso(expires_at)
            conn, _ = store.upsert_connection(
                integration,
                connection_id=f"{prefix or 'conn'}-{uuid.uuid4().hex[:10]}",
                credentials=creds,
                connection_config={"token_url": "http://127.0.0.1:9/oauth/token"},
            )
            if expires_at is not None:
                conn.last_refresh_success = expires_at - dt.timedelta(seconds=lifetime)
                conn.next_refresh_at = rt.plan_next_refresh(conn)
            pks.append(conn.id)
    return pks


def table_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the integrations and connections tables, ordered by id, on any database (to
    compare before/after: "nothing changed")."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in ("integrations", "connections"):
            query = text(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 - constant names
            rows[table] = [tuple(row) for row in conn.execute(query)]
    return rows


def assert_envelope(
    response: Any, status: int | set[int], code: str | None = None
) -> dict[str, Any]:
    """Check status, content type, envelope shape and the absence of traceback text."""
    statuses = {status} if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    text = response.text
    assert "Traceback" not in text and 'File "' not in text
    body = orjson.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), error
    assert set(error) <= {"code", "message", "payload", "errors"}, error
    if code is not None:
        assert error["code"] == code, error
    return error
