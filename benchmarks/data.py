"""Bulk-loading connections: ``INSERT ... SELECT generate_series`` (as tests/integration's scan-plan
test does) for the scan benchmark, and in-process imports of mock-provider token families for the
worker benchmarks. (The benchmarks that start ``freshtoken api`` import through its HTTP API:
``benchmarks/api_client.py``.)

Timestamps are naive UTC, as freshtoken stores them (``UTCDateTime``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text

from freshtoken.runtime import Runtime
from freshtoken.store.credentials import iso

INTEGRATION_KEY = "bench"


def create_integration(runtime: Runtime, *, key: str = INTEGRATION_KEY) -> int:
    """The integration every benchmark connection belongs to (generic ``oauth2`` provider)."""
    with runtime.store() as store:
        integration = store.get_integration(key) or store.create_integration(
            unique_key=key,
            provider="oauth2",
            client_id="mock-client",
            client_secret="mock-secret",  # noqa: S106 - the mock provider's fake secret
        )
        return integration.id


def insert_rows(
    runtime: Runtime,
    *,
    first: int,
    last: int,
    integration_id: int,
    due: int,
    key: str = INTEGRATION_KEY,
) -> None:
    """Insert connections ``c<first>``..``c<last>`` (ids follow the sequence).

    Rows ``c1``..``c<due>`` are due for the proactive scan (next_refresh_at five minutes ago,
    token expiring in 60 s); every other row is due hours from now with a day-long token. Each
    token was issued an hour before its expiry (``last_refresh_success``), as after a refresh.
    """
    with runtime.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO connections (connection_id, provider_config_key, provider, "
                "integration_id, credentials_type, has_refresh_token, connection_config, tags, "
                "refresh_exhausted, needs_reauth, version, created_at, updated_at, expires_at, "
                "last_refresh_success, next_refresh_at) "
                "SELECT 'c' || g, :key, 'oauth2', :iid, 'OAUTH2', true, '{}', '{}', false, false, "
                "1, t.now, t.now, "
                "CASE WHEN g <= :due THEN t.now + interval '60 seconds' "
                "     ELSE t.now + interval '1 day' + (g || ' seconds')::interval END, "
                "CASE WHEN g <= :due THEN t.now - interval '3540 seconds' "
                "     ELSE t.now + interval '1 day' + (g || ' seconds')::interval "
                "          - interval '1 hour' END, "
                "CASE WHEN g <= :due THEN t.now - interval '5 minutes' "
                "     ELSE t.now + interval '12 hours' + (g || ' seconds')::interval END "
                "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g, "
                "(SELECT timezone('utc', now()) AS now) AS t"
            ),
            {"key": key, "iid": integration_id, "due": due, "first": first, "last": last},
        )


def seed_families(provider_url: str, count: int, lifetime: float) -> list[dict[str, Any]]:
    """Register ``count`` token families at a ``freshtoken mock-provider`` (its /_mock/seed)."""
    import httpx

    with httpx.Client(base_url=provider_url, timeout=30) as client:
        return [
            client.post("/_mock/seed", json={"lifetime_seconds": lifetime}).json()
            for _ in range(count)
        ]


def import_connections(
    runtime: Runtime,
    families: list[dict[str, Any]],
    *,
    token_url: str,
    expiries: list[float],
    lifetime: float,
    key: str = INTEGRATION_KEY,
) -> list[tuple[int, str]]:
    """Import one OAUTH2 connection per seeded family, in one transaction, through the store.

    Connection ``c<i>`` (1-based) expires ``expiries[i-1]`` seconds from now and was issued
    ``lifetime`` seconds before that, so margins and leads follow from the lifetime as for a real
    token. Returns ``(pk, connection_id)`` pairs.
    """
    create_integration(runtime, key=key)
    now = runtime.clock.now()
    out: list[tuple[int, str]] = []
    with runtime.store() as store:
        integration = store.get_integration(key)
        assert integration is not None
        for i, (family, expiry) in enumerate(zip(families, expiries, strict=True), start=1):
            expires_at = now + dt.timedelta(seconds=expiry)
            conn, _ = store.upsert_connection(
                integration,
                connection_id=f"c{i}",
                credentials={
                    "type": "OAUTH2",
                    "access_token": family["access_token"],
                    "refresh_token": family["refresh_token"],
                    "expires_at": iso(expires_at),
                    "raw": {},
                },
                connection_config={"token_url": token_url},
            )
            conn.last_refresh_success = expires_at - dt.timedelta(seconds=lifetime)
            conn.next_refresh_at = runtime.plan_next_refresh(conn)
            out.append((conn.id, conn.connection_id))
    return out
