"""Demo connections: an integration ``demo`` and a few connections on the mock provider.

Used by ``freshtoken dev --demo`` (mock provider in-process) and by ``freshtoken demo-seed``
(a mock provider reached over HTTP, as compose's ``--profile demo`` runs it). The tokens expire
within the first minutes and are staggered, so proactive refreshes show up right away.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from freshtoken.runtime import Runtime
from freshtoken.store.credentials import iso

DEMO_INTEGRATION = "demo"
DEMO_CONNECTIONS = 5
DEMO_LIFETIME_SECONDS = 120


def import_demo_connections(
    runtime: Runtime,
    seed: Callable[[], dict[str, Any]],
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    count: int = DEMO_CONNECTIONS,
    lifetime_seconds: int = DEMO_LIFETIME_SECONDS,
) -> list[str]:
    """Create (or refresh) the demo integration and ``count`` connections; return their ids.

    ``seed`` registers a token family at the provider and returns its access and refresh token.
    Running it again replaces the demo connections' tokens (upsert), so it is safe to repeat.
    """
    now = runtime.clock.now()
    ids: list[str] = []
    with runtime.store() as store:
        integration = store.get_integration(DEMO_INTEGRATION) or store.create_integration(
            unique_key=DEMO_INTEGRATION,
            provider="oauth2",
            display_name="Demo (local mock provider)",
            client_id=client_id,
            client_secret=client_secret,
        )
        for i in range(count):
            family = seed()
            # Stagger the expiries so the first refreshes come due within seconds.
            expires = now + dt.timedelta(seconds=70 + 10 * i)
            connection_id = f"demo-{i + 1}"
            store.upsert_connection(
                integration,
                connection_id=connection_id,
                credentials={
                    "type": "OAUTH2",
                    "access_token": family["access_token"],
                    "refresh_token": family["refresh_token"],
                    "expires_at": iso(expires),
                    "raw": {},
                },
                connection_config={"token_url": token_url},
                # Issued a lifetime before its expiry, so the scan plans from the real lifetime.
                issued_at=expires - dt.timedelta(seconds=lifetime_seconds),
            )
            ids.append(connection_id)
    return ids
