"""The async read path's database access: one SELECT, one round trip, no thread, no ORM session.

``GET /connection(s)/{id}`` is the hot path. It reads one row through the unique
(provider_config_key, connection_id) index on an async engine (asyncpg on PostgreSQL, aiosqlite
on SQLite) in autocommit mode: no BEGIN/COMMIT around the single SELECT, so on PostgreSQL a read
is one round trip (asyncpg also caches the prepared statement per connection). The row is built
into a detached :class:`~freshtoken.store.models.Connection` without a session, so there is no
identity map and no unit of work to pay for; it is only ever read.

asyncpg over psycopg's async mode: the same indexed SELECT through SQLAlchemy Core measured
4.3-5.7k vs 3.2-3.6k reads/s at c=1 and 4.2-5.2k vs 2.5-5.0k at c=8 on the 2-core dev machine
(paired runs; figures in the report of issue 9).

Async engines (and their pooled connections) belong to the event loop that opened them, so each
loop gets its own engine; in a normal API process that is one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from typing import Any
from urllib.parse import unquote

import asyncpg
import orjson
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from freshtoken.crypto import Cipher
from freshtoken.db.types import UTCDateTime
from freshtoken.settings import Settings
from freshtoken.store.models import Connection, Integration
from freshtoken.store.repository import decrypt_connection_credentials

_CONNECTION_COLUMNS = [(attr.key, attr.columns[0]) for attr in Connection.__mapper__.column_attrs]
# Built once: SQLAlchemy's compiled cache then serves every read; asyncpg prepares it once per
# pooled connection.
_READ_ONE = select(*(column for _, column in _CONNECTION_COLUMNS)).where(
    Connection.provider_config_key == bindparam("pck"),
    Connection.connection_id == bindparam("cid"),
    Connection.deleted_at.is_(None),
)
_KEYS = [key for key, _ in _CONNECTION_COLUMNS]
_MANAGER = Connection._sa_class_manager  # type: ignore[attr-defined]


def detached_connection(values: dict[str, Any]) -> Connection:
    """A transient :class:`Connection` holding ``values``, built without attribute events.

    Filling ``__dict__`` is how SQLAlchemy's own loader populates rows; setting 29 instrumented
    attributes one by one cost ~60 µs per read, this ~5 µs. The row is never added to a session.
    """
    conn: Connection = _MANAGER.new_instance()
    conn.__dict__.update(values)
    return conn


_INTEGRATION_EXISTS = select(Integration.id).where(Integration.unique_key == bindparam("key"))


def async_url(sync_url: str) -> tuple[URL, dict[str, Any]]:
    """The async driver URL and connect arguments for the sync ``database_url``.

    PostgreSQL goes to asyncpg, whose connect() takes no libpq ``options``: ``-c name=value``
    pairs in it (tests use ``options=-csearch_path=...``) become asyncpg ``server_settings``.
    """
    url = make_url(sync_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite"), {"timeout": 30}
    if backend != "postgresql":
        raise ValueError(f"no async driver for database backend {backend!r}")
    query = dict(url.query)
    connect_args: dict[str, Any] = {}
    options = query.pop("options", None)
    if options is not None:
        text = unquote(options if isinstance(options, str) else " ".join(options))
        settings: dict[str, str] = {}
        for part in text.replace("-c ", "-c").split():
            if part.startswith("-c") and "=" in part:
                name, _, value = part[2:].partition("=")
                settings[name] = value
        if settings:
            connect_args["server_settings"] = settings
    return url.set(drivername="postgresql+asyncpg", query=query), connect_args


_UTC_KEYS = frozenset(
    key for key, column in _CONNECTION_COLUMNS if isinstance(column.type, UTCDateTime)
)
# The hot read on PostgreSQL, for asyncpg directly: _READ_ONE compiled once ($1 = key, $2 = id).
_PG_COMPILED = _READ_ONE.compile(dialect=PGDialect_asyncpg())  # type: ignore[no-untyped-call]
assert _PG_COMPILED.positiontup == ["pck", "cid"]
_PG_READ_ONE = str(_PG_COMPILED)
_PG_INTEGRATION_EXISTS = str(_INTEGRATION_EXISTS.compile(dialect=PGDialect_asyncpg()))  # type: ignore[no-untyped-call]
# What asyncpg raises when the database is unreachable or refuses; answered 503 like DBAPIError.
_PG_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


async def _pg_init(conn: asyncpg.Connection) -> None:
    """Decode json/jsonb as SQLAlchemy's PortableJSON does (to Python objects)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing to undo, so no round trip on release.

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` every time a connection goes back to the pool: a second round trip per read that
    cost about a tenth of a read's CPU. This pool only ever runs single SELECTs in autocommit
    (no SET, LISTEN, cursors, advisory locks or transactions), so there is no session state to
    reset; asyncpg still rolls back a connection released inside a transaction and drops one
    whose query was cancelled.
    """


class AsyncReader:
    """Async reads for the API's hot path (one engine, and on PostgreSQL one asyncpg pool, per
    event loop)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine]
        self._engines = weakref.WeakKeyDictionary()
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncpg.Pool]
        self._pools = weakref.WeakKeyDictionary()
        url, self._connect_args = async_url(settings.resolved_database_url)
        self._url = url
        self._postgres = url.get_backend_name() == "postgresql"

    async def _pg_pool(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            url = self._url
            pool = await asyncpg.create_pool(
                host=url.host,
                port=url.port,
                user=url.username,
                password=url.password,
                database=url.database,
                min_size=0,  # no background reconnect loop while the database is down
                max_size=2 * self.settings.db_pool_size,
                init=_pg_init,
                reset=_keep_session,
                **self._connect_args,
            )
            if self._pools.get(loop) is None:
                self._pools[loop] = pool
            else:  # another read opened one meanwhile
                await pool.close()
                pool = self._pools[loop]
        return pool

    async def _pg_fetchrow(self, sql: str, *args: Any) -> Any:
        try:
            pool = await self._pg_pool()
            return await pool.fetchrow(sql, *args)
        except _PG_ERRORS as exc:
            # The API's error handlers answer DBAPIError with 503 database_unavailable.
            raise OperationalError(sql, None, exc) from None

    async def _pg_fetch_for_read(
        self, provider_config_key: str, connection_id: str
    ) -> Connection | None:
        row = await self._pg_fetchrow(_PG_READ_ONE, provider_config_key, connection_id)
        if row is None:
            return None
        values = dict(zip(_KEYS, row, strict=True))
        for key in _UTC_KEYS:
            moment = values[key]
            if moment is not None and moment.tzinfo is None:
                values[key] = moment.replace(tzinfo=dt.UTC)
        return detached_connection(values)

    def engine(self) -> AsyncEngine:
        """The running loop's engine (autocommit: no BEGIN around a single statement)."""
        loop = asyncio.get_running_loop()
        engine = self._engines.get(loop)
        if engine is None:
            url, connect_args = self._url, self._connect_args
            kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
            if url.get_backend_name() == "postgresql":
                # No pre-ping: it would be a second round trip per read. A connection broken by a
                # database restart fails one read (503) and is discarded by the pool.
                kwargs.update(
                    pool_size=self.settings.db_pool_size,
                    max_overflow=self.settings.db_pool_size,
                )
            engine = create_async_engine(url, connect_args=connect_args, **kwargs)
            self._engines[loop] = engine
        return engine

    async def fetch_for_read(
        self, provider_config_key: str, connection_id: str
    ) -> Connection | None:
        """The live connection with this key pair, detached, or None (one indexed SELECT).

        On PostgreSQL through asyncpg directly (SQLAlchemy's per-statement work was a fifth of
        the read's CPU), elsewhere through the async engine.
        """
        if self._postgres:
            return await self._pg_fetch_for_read(provider_config_key, connection_id)
        params = {"pck": provider_config_key, "cid": connection_id}
        async with self.engine().connect() as conn:
            row = (await conn.execute(_READ_ONE, params)).first()
        if row is None:
            return None
        return detached_connection(dict(zip(_KEYS, row, strict=True)))

    async def integration_exists(self, unique_key: str) -> bool:
        """Whether an integration with this key exists (the 400-or-404 decision of a miss)."""
        if self._postgres:
            return await self._pg_fetchrow(_PG_INTEGRATION_EXISTS, unique_key) is not None
        async with self.engine().connect() as conn:
            return (
                await conn.execute(_INTEGRATION_EXISTS, {"key": unique_key})
            ).first() is not None

    async def ping(self) -> None:
        """One ``SELECT 1`` round trip (health)."""
        if self._postgres:
            await self._pg_fetchrow("SELECT 1")
            return
        async with self.engine().connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        """Close the running loop's pools."""
        loop = asyncio.get_running_loop()
        engine = self._engines.pop(loop, None)
        if engine is not None:
            await engine.dispose()
        pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.close()


def decrypt_credentials(cipher: Cipher, conn: Connection) -> dict[str, Any]:
    """Decrypt a connection's credentials ({} for a deleted or empty row); no database access."""
    return decrypt_connection_credentials(cipher, conn)
