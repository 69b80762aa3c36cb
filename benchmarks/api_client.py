"""Setting freshtoken up as a user does: integrations and connections through its HTTP API.

The benchmarks that start ``freshtoken api`` processes import their connections with
``POST /integrations`` and ``POST /connections`` (Nango's import API), so they exercise whatever
the code under test stores and reads, whatever its internals look like.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx

INTEGRATION_KEY = "bench"


def iso(epoch: float) -> str:
    """Epoch seconds as the ISO-8601 UTC form the import API takes."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def create_integration(base: str, secret_key: str, key: str = INTEGRATION_KEY) -> None:
    """``POST /integrations`` of a generic OAuth 2.0 integration (token URL per connection)."""
    response = httpx.post(
        base + "/integrations",
        headers={"Authorization": f"Bearer {secret_key}"},
        json={
            "provider": "oauth2",
            "unique_key": key,
            "credentials": {
                "type": "OAUTH2",
                "client_id": "bench-client",
                "client_secret": "bench-secret",
            },
        },
        timeout=30,
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST /integrations answered {response.status_code}")


def connection_body(
    connection_id: str,
    *,
    access_token: str,
    refresh_token: str,
    expires_at: float,
    token_url: str | None,
    key: str = INTEGRATION_KEY,
) -> dict[str, Any]:
    """The ``POST /connections`` body of one OAuth 2.0 connection."""
    body: dict[str, Any] = {
        "provider_config_key": key,
        "connection_id": connection_id,
        "credentials": {
            "type": "OAUTH2",
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_at": iso(expires_at),
            "raw": {"token_type": "bearer", "scope": "read write"},
        },
    }
    if token_url is not None:
        body["connection_config"] = {"token_url": token_url}
    return body


def import_connections(
    base: str, secret_key: str, bodies: list[dict[str, Any]], *, concurrency: int = 8
) -> None:
    """``POST /connections`` each body, ``concurrency`` at a time; any non-2xx answer raises."""

    async def run() -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        headers = {"Authorization": f"Bearer {secret_key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:

            async def worker() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    response = await client.post("/connections", json=body)
                    if response.status_code not in (200, 201):
                        # (the body is not quoted: an error may echo the credentials sent)
                        raise RuntimeError(f"POST /connections answered {response.status_code}")

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(run())
