"""Alembic environment: the URL and metadata come from freshtoken, never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

import freshtoken.store.models  # noqa: F401  (registers the tables on the metadata)
from freshtoken.db.base import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # batch mode rebuilds tables on SQLite, which cannot ALTER constraints in place
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    """Run against a live connection (passed in by freshtoken.migrate, or built from the URL)."""
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _configure(connectable)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
