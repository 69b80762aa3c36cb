"""Engines and sessions built from settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from freshtoken.settings import Settings, make_private_dir


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """Create the engine for ``settings.resolved_database_url``.

    SQLite gets WAL, a busy timeout and foreign keys, so the embedded mode's API, worker and beat
    threads can share one file; PostgreSQL gets a pre-pinged pool.
    """
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _private_sqlite_file(Path(url.database), settings)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # isolation_level=None lets SQLAlchemy's own BEGIN (below) control transactions.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # BEGIN IMMEDIATE takes the write lock up front: two writers then queue on
            # busy_timeout instead of one failing with "database is locked" on upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", settings.db_pool_size)
    kwargs.setdefault("max_overflow", settings.db_pool_size)
    return create_engine(url, **kwargs)


def _private_sqlite_file(path: Path, settings: Settings) -> None:
    """Make the SQLite file (and its -wal/-shm companions) 0600, and the data dir 0700.

    The file holds ciphertexts, connection metadata and integration settings. SQLite creates the
    -wal and -shm files with the main file's mode, so creating that one 0600 covers all three;
    files left 0644 by an older version are tightened. Only freshtoken's own data dir is
    chmodded: a database path elsewhere keeps its directory as the operator set it.
    """
    parent = path.parent
    if parent.resolve() == settings.data_dir.resolve():
        make_private_dir(parent)
    else:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.is_file() and companion.stat().st_mode & 0o077:
            os.chmod(companion, 0o600)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
