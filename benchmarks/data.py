"""Bulk-loading connections: ``INSERT ... SELECT generate_series`` (as tests/integration's scan-plan
test does), then, where the benchmark reads credentials, one encrypted credentials blob per row.

Timestamps are naive UTC, as freshtoken stores them (``UTCDateTime``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import text

from freshtoken.crypto import aad_for
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


def encrypt_credentials(runtime: Runtime, *, token_url: str | None = None) -> int:
    """Give every row without credentials an encrypted OAUTH2 blob matching its ``expires_at``.

    The tokens are random-looking placeholders (never sent to a provider by the read benchmark).
    """
    cipher = runtime.cipher
    with runtime.engine.begin() as conn:
        rows = conn.execute(
            text("SELECT id, expires_at FROM connections WHERE credentials_enc IS NULL ORDER BY id")
        ).all()
        updates: list[dict[str, Any]] = []
        for pk, expires_at in rows:
            credentials = {
                "type": "OAUTH2",
                "access_token": f"bench-at-{pk:08d}-" + "a" * 24,
                "refresh_token": f"bench-rt-{pk:08d}-" + "r" * 24,
                "expires_at": iso(expires_at.replace(tzinfo=dt.UTC)),
                "raw": {"token_type": "bearer", "scope": "read write"},
            }
            updates.append(
                {
                    "id": pk,
                    "enc": cipher.encrypt_json(
                        credentials, aad_for("connections", pk, "credentials")
                    ),
                }
            )
        for start in range(0, len(updates), 2000):
            conn.execute(
                text("UPDATE connections SET credentials_enc = :enc WHERE id = :id"),
                updates[start : start + 2000],
            )
        if token_url is not None:
            conn.execute(
                text("UPDATE connections SET connection_config = CAST(:cfg AS jsonb)"),
                {"cfg": json.dumps({"token_url": token_url})},
            )
    return len(rows)


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
