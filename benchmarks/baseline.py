"""The read-path baseline: a raw ASGI app (no framework) on asyncpg.

``python -m benchmarks.baseline --port N [--workers W]`` serves, under uvicorn with the options
``freshtoken api`` uses (same loop and HTTP implementation, access log off, W worker processes):

* ``GET /baseline/{connection_id}?provider_config_key=...``: the same indexed SELECT of the same
  row as freshtoken's read (``provider_config_key``, ``connection_id``, live rows, through the
  ``uq_connections_live_key`` index), on an asyncpg pool of the size freshtoken's pool has
  (``FRESHTOKEN_DB_POOL_SIZE``, default 10), the row returned as JSON (orjson). Nothing else:
  no authentication, no validation beyond the two parameters, no decryption, no refresh check,
  no logging. It is the least this machine can do for a read, so freshtoken's throughput over
  this one says how much of the machine's capacity the read path leaves on the table.
* ``GET /health``: 200 once the pool is open.

The database comes from ``BENCH_BASELINE_DSN`` (a libpq URL) and ``BENCH_BASELINE_SCHEMA``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import orjson

PREFIX = "/baseline/"
SELECT = (
    "SELECT * FROM connections "
    "WHERE provider_config_key = $1 AND connection_id = $2 AND deleted_at IS NULL"
)
_NOT_FOUND = b'{"error":"not_found"}'
_JSON = [(b"content-type", b"application/json")]


def _default(value: Any) -> Any:
    return str(value)


async def _keep_session(_conn: Any) -> None:
    """Pool reset that sends nothing (see freshtoken.store.asyncread._keep_session)."""


class BaselineApp:
    """The ASGI callable; the pool is opened at lifespan start-up (one per worker process)."""

    def __init__(self) -> None:
        self.pool: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one request (or the lifespan)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        status, body = 404, _NOT_FOUND
        if path.startswith(PREFIX):
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            row = await self.pool.fetchrow(
                SELECT, query.get("provider_config_key", ""), path[len(PREFIX) :]
            )
            if row is not None:
                status, body = 200, orjson.dumps(dict(row), default=_default)
        elif path == "/health":
            status, body = 200, b'{"status":"ok"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                size = int(os.environ.get("FRESHTOKEN_DB_POOL_SIZE", "10"))
                self.pool = await asyncpg.create_pool(
                    os.environ["BENCH_BASELINE_DSN"],
                    min_size=1,
                    max_size=size,
                    server_settings={"search_path": os.environ["BENCH_BASELINE_SCHEMA"]},
                    # No reset round trip on release, as freshtoken's read pool (the least
                    # work for the same read: nothing here changes session state).
                    reset=_keep_session,
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = BaselineApp()


def main() -> None:
    """Serve on 127.0.0.1 with the uvicorn options ``freshtoken api`` uses."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "benchmarks.baseline:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
