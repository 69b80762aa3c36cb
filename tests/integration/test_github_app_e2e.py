"""A GitHub-App-like connection kept fresh by the proactive scan: real worker and beat processes.

PostgreSQL (own schema), Redis (own database), ``freshtoken worker`` and ``freshtoken beat`` as
separate processes, and the in-process mock provider whose installation-token endpoint verifies
the app JWT against the app's public key. Installation tokens live 15 s here (an hour at GitHub),
so several rotations fit in a short test.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from freshtoken.api.app import create_app
from freshtoken.mockprovider import MockProvider
from freshtoken.store.models import Connection
from tests.authmode_helpers import (
    APP_ID,
    INSTALLATION_ID,
    private_key_pem,
    public_key_pem,
    write_providers_file,
)
from tests.e2e_helpers import (
    Fleet,
    drop_schema,
    freshtoken_env,
    lease_redis_db,
    parse_timestamp,
    wait_until,
)
from tests.support import (
    ENCRYPTION_KEY,
    REDIS_URL,
    SECRET_KEY,
    make_runtime,
    make_settings,
    pg_schema_url,
    require_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

log = logging.getLogger(__name__)

TOKEN_LIFETIME = 15.0
SCAN_INTERVAL = 1.0
ROTATIONS = 3


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Any, Fleet, Path]]:
    """A migrated runtime on a fresh schema and Redis database, a process fleet, the catalog."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        require_service("Redis", reachable=False)
    lease = lease_redis_db(REDIS_URL)
    database_url = pg_schema_url()
    providers_file = write_providers_file(tmp_path)
    runtime = make_runtime(
        make_settings(
            tmp_path,
            database_url=database_url,
            redis_url=lease.url,
            providers_file=providers_file,
            scan_interval_seconds=SCAN_INTERVAL,
        )
    )
    env = freshtoken_env(
        database_url=database_url,
        redis_url=lease.url,
        data_dir=tmp_path / "data",
        secret_key=SECRET_KEY,
        encryption_key=ENCRYPTION_KEY,
        scan_interval_seconds=SCAN_INTERVAL,
        providers_file=providers_file,
    )
    fleet = Fleet(tmp_path / "logs", env)
    try:
        yield runtime, fleet, providers_file
    finally:
        fleet.stop_all()
        runtime.close()
        drop_schema(database_url)
        lease.release()


@pytest.mark.timeout(120)
def test_scan_rotates_installation_tokens_before_expiry(
    stack: tuple[Any, Fleet, Path],
) -> None:
    """Three+ scheduled rotations, each before the old token expires, one mint per rotation."""
    runtime, fleet, _ = stack
    with MockProvider() as provider:
        provider.authmodes.register_app(APP_ID, public_key_pem(), INSTALLATION_ID)
        provider.authmodes.installation_token_lifetime_seconds = TOKEN_LIFETIME
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        with TestClient(create_app(runtime), headers=headers) as client:
            created = client.post(
                "/integrations",
                json={
                    "provider": "mock-github-app",
                    "unique_key": "gh",
                    "credentials": {
                        "type": "APP",
                        "app_id": APP_ID,
                        "app_link": "https://github.com/apps/freshtoken-e2e",
                        "private_key": private_key_pem(),
                    },
                },
            )
            assert created.status_code == 200, created.text
            imported = client.post(
                "/connections",
                json={
                    "provider_config_key": "gh",
                    "connection_id": "installation-1",
                    "connection_config": {"api_base": provider.url},
                    "credentials": {
                        "type": "APP",
                        "app_id": APP_ID,
                        "installation_id": INSTALLATION_ID,
                    },
                },
            )
            assert imported.status_code == 201, imported.text
        first_token = imported.json()["credentials"]["access_token"]

        worker = fleet.worker("worker", concurrency=2, pool="prefork")
        beat = fleet.beat("beat")

        def version() -> int:
            with runtime.session_factory() as session:
                row = session.scalars(select(Connection)).one()
                return row.version

        started = time.monotonic()
        wait_until(
            lambda: version() >= 2 + ROTATIONS,
            TOKEN_LIFETIME * (ROTATIONS + 2),
            f"{ROTATIONS} scheduled rotations",
            interval=0.5,
            procs=[worker, beat],
            details=lambda: f"version {version()}",
        )
        elapsed = time.monotonic() - started

        events = [
            e for e in worker.events("token.refresh") if e.get("provider") == "mock-github-app"
        ]
        assert events, worker.tail()
        assert {e["outcome"] for e in events} == {"success"}, events
        assert {e["trigger"] for e in events} == {"scheduled"}
        # Every rotation happened while the previous token was still valid.
        assert min(e["seconds_to_expiry"] for e in events) > 0, events
        stats = provider.authmodes.stats()
        issued = stats["installation_tokens_issued"]
        # One mint per stored token: the import's, then exactly one per scheduled rotation.
        assert len(issued) == 1 + len(events)
        assert len(set(issued)) == len(issued)
        assert issued[0] == first_token
        assert stats["jwt_rejected"] == 0

        with runtime.session_factory() as session:
            row = session.scalars(select(Connection)).one()
            assert row.version == 1 + 1 + len(events)  # import, its mint, each rotation
            assert row.expires_at is not None and row.expires_at > dt.datetime.now(dt.UTC)
            assert not row.needs_reauth and not row.refresh_exhausted
        with runtime.store() as store:
            stored = store.credentials(row)
        assert stored["access_token"] == issued[-1]
        assert provider.authmodes.is_token_valid(stored["access_token"])
        new_expiries = [parse_timestamp(e["new_expires_at"]) for e in events]
        assert new_expiries == sorted(new_expiries)
        assert elapsed < TOKEN_LIFETIME * (ROTATIONS + 2)
        log.info(
            "e2e.github_app rotations=%d min_seconds_to_expiry=%.1f elapsed=%.1f",
            len(events),
            min(e["seconds_to_expiry"] for e in events),
            elapsed,
        )
