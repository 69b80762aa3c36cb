"""Auth webhooks end to end: real worker and beat processes, PostgreSQL, Redis, mock provider.

One stack, three connections, lean (40-second tokens, a 1-second scan):

- ``revoked``: its refresh token is revoked at the provider before the first refresh. The scan's
  refresh fails with ``invalid_grant`` and the receiver gets exactly one failure webhook
  (``operation: "refresh"``, ``success: false``), before the token's ``expires_at`` and with no
  read of the connection. Re-importing it sends one ``override`` webhook.
- ``healthy``: refreshed by the scan like the revoked one, and no refresh webhook at all.
- ``flaky``: its ``webhook_url_override`` points at a receiver that answers 500 twice and then
  200: the same event id arrives three times and then never again.

Creation webhooks are recorded by this test process's own runtime (the import) and enqueued to
the real broker, so the after-commit hand-off across processes is exercised too.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import select

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.store.credentials import iso
from freshtoken.store.models import Connection, WebhookOutbox
from tests.e2e_helpers import (
    Fleet,
    bulk_import,
    drop_schema,
    freshtoken_env,
    lease_redis_db,
    local_seed,
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
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCAN_INTERVAL = 1.0
LIFETIME = 40.0
EXPIRES_IN = 30.0  # refresh lead = half the lifetime: the scan refreshes ~10 s after import


@pytest.fixture
def redis_lease() -> Iterator[str]:
    """A Redis database of this test's own (flushed and given back afterwards)."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        require_service("Redis", reachable=False)
    lease = lease_redis_db(REDIS_URL)
    try:
        yield lease.url
    finally:
        lease.release()


def _revoke(provider: MockProvider, refresh_token: str) -> None:
    """Revoke a token family at the provider the way a real one does on reuse: spend it twice."""
    for _ in range(2):
        httpx.post(
            provider.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": provider.config.client_id,
                "client_secret": provider.config.client_secret,
            },
            timeout=5,
        )
    assert provider.current_refresh_token(refresh_token) is None


def test_failure_webhook_arrives_before_expiry_once_and_retries_deliver_once(
    tmp_path: Path, redis_lease: str
) -> None:
    """One failure webhook before expiry, none for the healthy row, override on re-import,
    and 500, 500, 200 → the same event id three times and nothing more."""
    database_url = pg_schema_url()
    webhook_settings = {
        "scan_interval_seconds": SCAN_INTERVAL,
        "webhook_retry_base_seconds": 0.5,
        "outbound_allow_private": "true",
        "db_pool_size": 4,
    }
    with (
        WebhookReceiver() as receiver,
        WebhookReceiver(script=[500, 500]) as flaky,
        MockProvider(MockProviderConfig(token_lifetime_seconds=LIFETIME)) as provider,
    ):
        settings = {**webhook_settings, "webhook_url": receiver.url + "/hooks"}
        runtime = make_runtime(
            make_settings(tmp_path, database_url=database_url, redis_url=redis_lease, **settings)
        )
        env = freshtoken_env(
            database_url=database_url,
            redis_url=redis_lease,
            data_dir=tmp_path / "data",
            secret_key=SECRET_KEY,
            encryption_key=ENCRYPTION_KEY,
            **settings,
        )
        try:
            with Fleet(tmp_path / "logs", env) as fleet:
                worker = fleet.worker("worker", concurrency=2)
                beat = fleet.beat("beat")
                imported = bulk_import(
                    runtime,
                    seed=local_seed(provider),
                    token_url=provider.token_url,
                    tokens=[(LIFETIME, EXPIRES_IN)] * 2,
                )
                revoked, healthy = imported
                # Imported with its URL override in the same transaction (as the API does).
                with runtime.store() as store:
                    integration = store.get_integration("mock")
                    assert integration is not None
                    family = provider.seed(lifetime_seconds=3600)
                    flaky_conn, _ = store.upsert_connection(
                        integration,
                        connection_id="flaky",
                        credentials={
                            "type": "OAUTH2",
                            "access_token": family["access_token"],
                            "refresh_token": family["refresh_token"],
                            "expires_at": iso(runtime.clock.now() + dt.timedelta(hours=1)),
                        },
                        connection_config={"token_url": provider.token_url},
                    )
                    flaky_conn.webhook_url_override = flaky.url + "/flaky"
                _revoke(provider, revoked.refresh_token)
                procs = [worker, beat]

                def bodies() -> list[dict[str, object]]:
                    return [r.json() for r in receiver.received()]

                # The failure webhook, before the token's expiry, with nobody reading.
                failure = wait_until(
                    lambda: [r for r in receiver.received() if r.json()["operation"] == "refresh"],
                    EXPIRES_IN + 5,
                    "the refresh failure webhook",
                    procs=procs,
                    details=lambda: f"received {bodies()}",
                )
                (got,) = failure
                body = got.json()
                assert body["connectionId"] == revoked.connection_id
                assert body["success"] is False
                assert body["error"]["type"] == "refresh_token_external_error"
                assert got.at < revoked.expires_at.timestamp()
                ahead = revoked.expires_at.timestamp() - got.at

                # The healthy row is refreshed by the scan too, and sends nothing.
                def refreshed() -> bool:
                    with runtime.session_factory() as session:
                        conn = session.get(Connection, healthy.pk)
                        return conn is not None and conn.version >= 2

                wait_until(refreshed, EXPIRES_IN, "healthy row refreshed", procs=procs)
                time.sleep(3 * SCAN_INTERVAL)  # more scans and sweeps: still exactly one failure
                refresh_hooks = [b for b in bodies() if b["operation"] == "refresh"]
                assert [b["connectionId"] for b in refresh_hooks] == [revoked.connection_id]
                with runtime.session_factory() as session:
                    rows = {c.id: c for c in session.scalars(select(Connection))}
                assert rows[revoked.pk].needs_reauth
                assert all(c.last_fetched_at is None for c in rows.values())

                # Re-importing the revoked connection: one override webhook.
                bulk_import(
                    runtime,
                    seed=local_seed(provider),
                    token_url=provider.token_url,
                    tokens=[(LIFETIME, 3600.0)],
                )
                wait_until(
                    lambda: [b for b in bodies() if b["operation"] == "override"],
                    30,
                    "the override webhook",
                    procs=procs,
                )
                (override,) = [b for b in bodies() if b["operation"] == "override"]
                assert override["connectionId"] == revoked.connection_id
                assert override["success"] is True

                # 500, 500, 200 at the override URL: three deliveries of one event, then none.
                wait_until(lambda: len(flaky.received()) >= 3, 30, "3 flaky deliveries")
                time.sleep(3 * SCAN_INTERVAL + 2)
                flaky_got = flaky.received()
                assert len(flaky_got) == 3
                assert len({r.event_id for r in flaky_got}) == 1
                assert {r.json()["connectionId"] for r in flaky_got} == {flaky_conn.connection_id}

                # Primary receiver: 2 creations, 1 failure, 1 override, each event once.
                ids = [r.event_id for r in receiver.received()]
                assert len(ids) == len(set(ids)) == 4
                with runtime.session_factory() as session:
                    statuses = set(session.scalars(select(WebhookOutbox.status)))
                assert statuses == {"delivered"}
                lines = worker.events("webhook.delivery")
                assert sorted(e["outcome"] for e in lines if e["target"] == "override") == [
                    "delivered",
                    "retry",
                    "retry",
                ]
                # No task crashed (delivery or sweep) in the worker.
                crashed = [e for e in worker.logs() if "raised unexpected" in str(e.get("event"))]
                assert crashed == []
                print(f"failure webhook {ahead:.1f} s before expires_at")  # noqa: T201
        finally:
            runtime.close()
            drop_schema(database_url)
