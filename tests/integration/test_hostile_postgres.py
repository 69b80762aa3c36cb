"""Hostile input on PostgreSQL, which stores NUL in neither text nor jsonb: a NUL in a request
(refused with 400, never 503) and in a provider's error text (issue 10, row 6)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.runtime import build_runtime
from freshtoken.store.credentials import iso
from tests.hostile import HostileProvider
from tests.support import (
    AUTH_HEADERS,
    SECRET_KEY,
    assert_envelope,
    make_runtime,
    make_settings,
    pg_schema_url,
    table_rows,
)

pytestmark = pytest.mark.integration


def test_nul_in_provider_error_is_recorded_and_cools_down(
    tmp_path: Path, hostile: HostileProvider
) -> None:
    """error = "invalid_request\\u0000x": the failure is stored (PostgreSQL rejects NUL in text),
    so the next read is in cooldown instead of calling the provider again (was 503 forever)."""
    hostile.behave(kind="error", status=400, error="invalid_request\u0000x")
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    rt = make_runtime(make_settings(tmp_path, database_url=pg_schema_url()), clock=clock)
    try:
        with rt.store() as store:
            integration = store.create_integration(
                unique_key="hp", provider="oauth2", client_id="cid", client_secret="cs-nul-test"
            )
            store.upsert_connection(
                integration,
                connection_id="c1",
                credentials={
                    "type": "OAUTH2",
                    "access_token": "at-old",
                    "refresh_token": "rt-nul-test-0001",
                    "expires_at": iso(clock.now() - dt.timedelta(seconds=5)),
                },
                connection_config={"token_url": hostile.url},
            )
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        with TestClient(create_app(rt), headers=headers, raise_server_exceptions=False) as client:
            first = client.get("/connections/c1", params={"provider_config_key": "hp"})
            assert first.status_code == 400, first.text
            second = client.get("/connections/c1", params={"provider_config_key": "hp"})
        assert second.status_code == 424, second.text
        assert len(hostile.received) == 1
        with rt.store() as store:
            conn = store.get_connection("hp", "c1")
            assert conn is not None
            assert conn.last_refresh_error == "invalid_requestx"
            assert conn.last_refresh_failure is not None
    finally:
        rt.close()


def test_nul_is_400_not_503_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL, which stores NUL in neither text nor jsonb, NUL input is a 400, not a 503."""
    runtime = build_runtime(make_settings(tmp_path, pg_url), with_refresher=False)
    try:
        migrate.upgrade(runtime.engine)
        with TestClient(create_app(runtime), headers=AUTH_HEADERS) as pg_client:
            created = pg_client.post(
                "/integrations", json={"provider": "oauth2", "unique_key": "k"}
            )
            assert created.status_code == 200
            before = table_rows(runtime.engine)
            body = {"provider": "oauth2", "unique_key": "k2", "display_name": "a\x00"}
            assert_envelope(pg_client.post("/integrations", json=body), 400, "invalid_body")
            body = {"connection_id": "c", "provider_config_key": "k", "metadata": {"a\x00": 1}}
            assert_envelope(pg_client.post("/connections/metadata", json=body), 400, "invalid_body")
            listing = pg_client.get("/connections?connectionId=a%00&integrationId=k%00")
            assert_envelope(listing, 400, "invalid_query_params")
            assert table_rows(runtime.engine) == before
    finally:
        runtime.close()
