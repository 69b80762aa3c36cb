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
import weakref
from typing import Any
from urllib.parse import unquote

from sqlalchemy import bindparam, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from freshtoken.crypto import Cipher, aad_for
from freshtoken.settings import Settings
from freshtoken.store.models import Connection, Integration

_CONNECTION_COLUMNS = [(attr.key, attr.columns[0]) for attr in Connection.__mapper__.column_attrs]
# Built once: SQLAlchemy's compiled cache then serves every read; asyncpg prepares it once per
# pooled connection.
_READ_ONE = select(*(column for _, column in _CONNECTION_COLUMNS)).where(
    Connection.provider_config_key == bindparam("pck"),
    Connection.connection_id == bindparam("cid"),
    Connection.deleted_at.is_(None),
)
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


class AsyncReader:
    """Async reads for the API's hot path (one engine per event loop)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine]
        self._engines = weakref.WeakKeyDictionary()

    def engine(self) -> AsyncEngine:
        """The running loop's engine (autocommit: no BEGIN around a single statement)."""
        loop = asyncio.get_running_loop()
        engine = self._engines.get(loop)
        if engine is None:
            url, connect_args = async_url(self.settings.resolved_database_url)
            kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
            if url.get_backend_name() == "postgresql":
                kwargs.update(
                    pool_size=self.settings.db_pool_size,
                    max_overflow=self.settings.db_pool_size,
                    pool_pre_ping=True,
                )
            engine = create_async_engine(url, connect_args=connect_args, **kwargs)
            self._engines[loop] = engine
        return engine

    async def fetch_for_read(
        self, provider_config_key: str, connection_id: str
    ) -> Connection | None:
        """The live connection with this key pair, detached, or None (one indexed SELECT)."""
        params = {"pck": provider_config_key, "cid": connection_id}
        async with self.engine().connect() as conn:
            row = (await conn.execute(_READ_ONE, params)).first()
        if row is None:
            return None
        out = Connection()
        for (key, _), value in zip(_CONNECTION_COLUMNS, row, strict=True):
            setattr(out, key, value)
        return out

    async def integration_exists(self, unique_key: str) -> bool:
        """Whether an integration with this key exists (the 400-or-404 decision of a miss)."""
        async with self.engine().connect() as conn:
            return (
                await conn.execute(_INTEGRATION_EXISTS, {"key": unique_key})
            ).first() is not None

    async def ping(self) -> None:
        """One ``SELECT 1`` round trip (health)."""
        async with self.engine().connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        """Close the running loop's pool."""
        engine = self._engines.pop(asyncio.get_running_loop(), None)
        if engine is not None:
            await engine.dispose()


def decrypt_credentials(cipher: Cipher, conn: Connection) -> dict[str, Any]:
    """Decrypt a connection's credentials ({} for a deleted or empty row); no database access."""
    if conn.credentials_enc is None:
        return {}
    value = cipher.decrypt_json(
        conn.credentials_enc, aad_for("connections", conn.id, "credentials")
    )
    return value if isinstance(value, dict) else {}
