"""The read path's async driver, chosen by measurement: the same indexed SELECT on each candidate.

Issue 9 asks for the async read path's database access to be chosen by measurement (SQLAlchemy's
asyncio extension on asyncpg, or psycopg 3's async mode). Here, in one process and one event
loop, ``clients`` coroutines each own one connection of each candidate and run the read's SELECT
(``provider_config_key`` and ``connection_id`` of a random live connection) back to back:

* **asyncpg**: ``Connection.fetchrow`` of the statement as freshtoken compiles it (what the read
  path does on PostgreSQL: asyncpg caches the prepared statement per connection);
* **psycopg async**: ``AsyncConnection.execute(..., prepare=True)`` + ``fetchone`` in autocommit,
  the same statement with psycopg's placeholders;
* **SQLAlchemy + asyncpg**: ``AsyncConnection.execute`` of the Core ``select`` (the read path's
  statement object) on an autocommit async engine: what the SQLite path does, on PostgreSQL.

Candidates run in rotating order in every repetition; figures are reads/s per candidate and its
ratio to asyncpg in the same repetition (median over repetitions).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import psycopg
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.common import log, median
from freshtoken.store.asyncread import _PG_READ_ONE, _READ_ONE

CANDIDATES = ("asyncpg", "psycopg async", "SQLAlchemy + asyncpg")


@dataclass(frozen=True)
class DriverSizes:
    """How long and how concurrent."""

    clients: tuple[int, ...] = (1, 8)
    duration_s: float = 1.5
    repetitions: int = 5


async def _timed(
    fetch: Any, connections: list[Any], ids: list[str], key: str, duration: float
) -> float:
    """Reads/s of ``fetch(conn, key, id)`` with one coroutine per connection for ``duration``."""
    stop = time.perf_counter() + duration
    done = 0

    async def client(conn: Any, rng: random.Random) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            row = await fetch(conn, key, rng.choice(ids))
            if row is None:
                raise RuntimeError("driver benchmark: a live connection was not found")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(c, random.Random(i)) for i, c in enumerate(connections)))
    return done / (time.perf_counter() - started)


async def _bench(
    libpq_url: str, schema: str, key: str, ids: list[str], sizes: DriverSizes
) -> dict[str, Any]:
    settings = {"search_path": schema}
    most = max(sizes.clients)
    pg = [await asyncpg.connect(libpq_url, server_settings=settings) for _ in range(most)]
    pq = [
        await psycopg.AsyncConnection.connect(
            libpq_url, autocommit=True, options=f"-csearch_path={schema}"
        )
        for _ in range(most)
    ]
    engine = create_async_engine(
        libpq_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        isolation_level="AUTOCOMMIT",
        pool_size=most,
        connect_args={"server_settings": settings},
    )
    sa = [await engine.connect() for _ in range(most)]
    psycopg_sql = _PG_READ_ONE.replace("$1", "%s").replace("$2", "%s")

    async def fetch_asyncpg(conn: Any, pck: str, cid: str) -> Any:
        return await conn.fetchrow(_PG_READ_ONE, pck, cid)

    async def fetch_psycopg(conn: Any, pck: str, cid: str) -> Any:
        cursor = await conn.execute(psycopg_sql, (pck, cid), prepare=True)
        return await cursor.fetchone()

    async def fetch_sqlalchemy(conn: Any, pck: str, cid: str) -> Any:
        return (await conn.execute(_READ_ONE, {"pck": pck, "cid": cid})).first()

    fetchers = {
        "asyncpg": (fetch_asyncpg, pg),
        "psycopg async": (fetch_psycopg, pq),
        "SQLAlchemy + asyncpg": (fetch_sqlalchemy, sa),
    }
    runs: list[dict[str, Any]] = []
    try:
        for fetch, conns in fetchers.values():  # warm-up: statements prepared
            await _timed(fetch, conns, ids, key, 0.3)
        for rep in range(sizes.repetitions):
            for clients in sizes.clients:
                shift = rep % len(CANDIDATES)
                order = CANDIDATES[shift:] + CANDIDATES[:shift]
                for name in order:
                    fetch, conns = fetchers[name]
                    rate = await _timed(fetch, conns[:clients], ids, key, sizes.duration_s)
                    runs.append({"candidate": name, "clients": clients, "rep": rep, "rps": rate})
    finally:
        for c in pg:
            await c.close()
        for c in pq:
            await c.close()
        for c in sa:
            await c.close()
        await engine.dispose()
    return {"runs": runs}


def summarise(runs: list[dict[str, Any]], sizes: DriverSizes) -> list[dict[str, Any]]:
    """Per (clients, candidate): median reads/s and the median paired ratio to asyncpg."""
    rows = []
    for clients in sizes.clients:
        base = {
            r["rep"]: r["rps"]
            for r in runs
            if r["clients"] == clients and r["candidate"] == "asyncpg"
        }
        for name in CANDIDATES:
            mine = [r for r in runs if r["clients"] == clients and r["candidate"] == name]
            rows.append(
                {
                    "clients": clients,
                    "candidate": name,
                    "rps_median": median(r["rps"] for r in mine),
                    "ratio_to_asyncpg": median(r["rps"] / base[r["rep"]] for r in mine),
                }
            )
    return rows


def bench_drivers(
    libpq_url: str, schema: str, key: str, ids: list[str], sizes: DriverSizes
) -> dict[str, Any]:
    """Run the driver comparison on an existing, populated schema; returns runs and summary."""
    result = asyncio.run(_bench(libpq_url, schema, key, ids, sizes))
    summary = summarise(result["runs"], sizes)
    for row in summary:
        log(
            f"drivers: c={row['clients']} {row['candidate']}: {row['rps_median']:.0f} reads/s "
            f"({row['ratio_to_asyncpg']:.2f} of asyncpg)"
        )
    return {"sizes": asdict(sizes), "runs": result["runs"], "summary": summary}
