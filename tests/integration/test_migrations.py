"""Migrations on SQLite and PostgreSQL: no drift, a full round trip, and the live-key index."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from freshtoken import migrate
from freshtoken.clock import SystemClock
from freshtoken.crypto import Cipher
from freshtoken.db.engine import make_engine, make_session_factory, session_scope
from freshtoken.store.models import Connection, Integration
from freshtoken.store.repository import ConnectionStore
from tests.support import ENCRYPTION_KEY, make_settings, pg_schema_url

pytestmark = pytest.mark.integration

APP_TABLES = {"integrations", "connections", "connect_sessions", "oauth_sessions"}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each kind (PostgreSQL: a fresh schema, dropped afterwards)."""
    if request.param == "sqlite":
        eng = make_engine(make_settings(tmp_path))
        yield eng
        eng.dispose()
        return
    eng = create_engine(pg_schema_url())
    yield eng
    with eng.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


def _revisions(engine: Engine) -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if "alembic_version" not in inspect(conn).get_table_names():
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def _store(session: Session) -> ConnectionStore:
    return ConnectionStore(session, Cipher(base64.b64decode(ENCRYPTION_KEY)), SystemClock())


def test_upgrade_matches_the_models_and_round_trips(engine: Engine) -> None:
    """upgrade → no drift → downgrade to base (empty) → upgrade step by step → no drift."""
    revisions = _revisions(engine)
    assert revisions, "no migrations found"
    migrate.upgrade(engine)
    assert _current(engine) == revisions[-1]
    assert _tables(engine) >= APP_TABLES
    assert migrate.schema_drift(engine) == []

    migrate.downgrade(engine, "base")
    assert _current(engine) is None
    assert _tables(engine) & APP_TABLES == set()

    for revision in revisions:
        migrate.upgrade(engine, revision)
        assert _current(engine) == revision
    assert migrate.schema_drift(engine) == []
    # Upgrading an up-to-date database is a no-op.
    migrate.upgrade(engine)
    assert migrate.schema_drift(engine) == []


def test_each_downgrade_step_leaves_a_valid_schema(engine: Engine) -> None:
    """Every revision can be downgraded one step at a time down to base and re-applied."""
    revisions = _revisions(engine)
    migrate.upgrade(engine)
    for expected in reversed([None, *revisions[:-1]]):
        migrate.downgrade(engine, "-1")
        assert _current(engine) == expected
    migrate.upgrade(engine)
    assert migrate.schema_drift(engine) == []


def _conn_row(integration: Integration, connection_id: str) -> Connection:
    now = dt.datetime.now(dt.UTC)
    return Connection(
        connection_id=connection_id,
        provider_config_key=integration.unique_key,
        provider=integration.provider,
        integration_id=integration.id,
        credentials_type="API_KEY",
        connection_config={},
        tags={},
        version=1,
        created_at=now,
        updated_at=now,
    )


def test_live_key_is_unique_but_deleted_ids_can_be_reimported(engine: Engine) -> None:
    """A soft-deleted connection id can be imported again; two live rows with one id cannot."""
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    creds = {"type": "API_KEY", "apiKey": "k-123"}
    with session_scope(factory) as session:
        store = _store(session)
        integration = store.create_integration(unique_key="mig", provider="api-key")
        other = store.create_integration(unique_key="mig-other", provider="api-key")
        first, created = store.upsert_connection(integration, connection_id="c1", credentials=creds)
        assert created
        store.soft_delete(first)
        session.flush()
        second, created = store.upsert_connection(
            integration, connection_id="c1", credentials=creds
        )
        assert created and second.id != first.id
        store.soft_delete(second)
        session.flush()
        third, created = store.upsert_connection(integration, connection_id="c1", credentials=creds)
        assert created and third.id not in (first.id, second.id)
        # The same connection id under another integration is a different key.
        _, created = store.upsert_connection(other, connection_id="c1", credentials=creds)
        assert created
        integration_id = integration.id

    with session_scope(factory) as session:
        count = session.execute(
            text("SELECT count(*) FROM connections WHERE connection_id = 'c1'")
        ).scalar_one()
        assert count == 4

    with pytest.raises(IntegrityError), session_scope(factory) as session:
        owner = session.get(Integration, integration_id)
        assert owner is not None
        session.add(_conn_row(owner, "c1"))
        session.flush()

    with session_scope(factory) as session:
        live = session.execute(
            text(
                "SELECT count(*) FROM connections "
                "WHERE connection_id = 'c1' AND provider_config_key = 'mig' AND deleted_at IS NULL"
            )
        ).scalar_one()
        assert live == 1


def test_rows_survive_the_upgrade_from_the_first_revision(engine: Engine) -> None:
    """Data written at the first revision is kept by later migrations, index rules included."""
    revisions = _revisions(engine)
    migrate.upgrade(engine, revisions[0])
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO integrations (id, unique_key, provider, created_at, updated_at) "
                "VALUES (1, 'old', 'api-key', :now, :now)"
            ),
            {"now": now},
        )
        for pk, deleted in ((1, now), (2, None)):
            conn.execute(
                text(
                    "INSERT INTO connections (id, connection_id, provider_config_key, provider, "
                    "integration_id, credentials_type, has_refresh_token, connection_config, "
                    "tags, refresh_exhausted, needs_reauth, version, created_at, updated_at, "
                    "deleted_at) VALUES (:pk, 'same', 'old', 'api-key', 1, 'API_KEY', false, "
                    "'{}', '{}', false, false, 1, :now, :now, :deleted)"
                ),
                {"pk": pk, "now": now, "deleted": deleted},
            )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM connections ORDER BY id")).scalars().all()
    assert ids == [1, 2]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO connections (id, connection_id, provider_config_key, provider, "
                "integration_id, credentials_type, has_refresh_token, connection_config, tags, "
                "refresh_exhausted, needs_reauth, version, created_at, updated_at) VALUES "
                "(3, 'same', 'old', 'api-key', 1, 'API_KEY', false, '{}', '{}', false, false, "
                "1, :now, :now)"
            ),
            {"now": now},
        )
    assert migrate.schema_drift(engine) == []
