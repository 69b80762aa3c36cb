"""The store on PostgreSQL: nothing secret is readable in the database, and CAS holds."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from freshtoken.errors import DecryptionError
from freshtoken.runtime import Runtime
from freshtoken.store.repository import RefreshWrite
from tests.support import make_runtime, make_settings, pg_schema_url

pytestmark = pytest.mark.integration


def _secret(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(18)}"


@pytest.fixture
def pg_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A migrated runtime on a fresh PostgreSQL schema (dropped afterwards)."""
    rt = make_runtime(make_settings(tmp_path, database_url=pg_schema_url()), with_refresher=False)
    assert rt.engine.dialect.name == "postgresql"
    yield rt
    with rt.engine.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    rt.close()


@pytest.fixture
def imported(pg_runtime: Runtime) -> dict[str, Any]:
    """One connection of each credential type plus an integration with a client secret."""
    s = {
        name: _secret(name)
        for name in (
            "client-secret",
            "at",
            "rt",
            "id-token",
            "override-secret",
            "cc-token",
            "cc-secret",
            "password",
            "api-key",
        )
    }
    credentials: dict[str, dict[str, Any]] = {
        "oauth": {
            "type": "OAUTH2",
            "access_token": s["at"],
            "refresh_token": s["rt"],
            "expires_at": "2030-01-01T00:00:00.000Z",
            "raw": {"access_token": s["at"], "refresh_token": s["rt"], "id_token": s["id-token"]},
            "config_override": {"client_id": "override-id", "client_secret": s["override-secret"]},
        },
        "cc": {
            "type": "OAUTH2_CC",
            "token": s["cc-token"],
            "client_id": "cc-client-id",
            "client_secret": s["cc-secret"],
            "expires_at": "2030-01-01T00:00:00.000Z",
            "raw": {"access_token": s["cc-token"]},
        },
        "basic": {"type": "BASIC", "username": "visible-user", "password": s["password"]},
        "apikey": {"type": "API_KEY", "apiKey": s["api-key"]},
    }
    pks: dict[str, int] = {}
    with pg_runtime.store() as store:
        integration = store.create_integration(
            unique_key="pg-int",
            provider="oauth2",
            client_id="visible-client-id",
            client_secret=s["client-secret"],
        )
        second = store.create_integration(
            unique_key="pg-int-2", provider="oauth2", client_secret=_secret("second")
        )
        for name, creds in credentials.items():
            conn, _ = store.upsert_connection(
                integration,
                connection_id=f"visible-conn-{name}",
                credentials=creds,
                connection_config={"subdomain": "visible-tenant"},
                metadata={"note": "visible-metadata"},
            )
            pks[name] = conn.id
        integration_ids = {"first": integration.id, "second": second.id}
    return {
        "secrets": s,
        "credentials": credentials,
        "pks": pks,
        "integrations": integration_ids,
    }


def _row_texts(rt: Runtime) -> str:
    with rt.engine.connect() as conn:
        rows = [
            *conn.execute(text("SELECT t::text FROM connections t")).scalars(),
            *conn.execute(text("SELECT t::text FROM integrations t")).scalars(),
        ]
    return "\n".join(rows)


def _copy_dump(rt: Runtime) -> str:
    """Every table of the schema through COPY ... TO STDOUT (what pg_dump reads)."""
    raw = rt.engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        chunks: list[bytes] = []
        with pg.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name"
            )
            tables = [row[0] for row in cur.fetchall()]
            assert {"connections", "integrations", "alembic_version"} <= set(tables)
            for table in tables:
                with cur.copy(f'COPY "{table}" TO STDOUT') as copy:
                    chunks.extend(bytes(chunk) for chunk in copy)
        return b"".join(chunks).decode()
    finally:
        raw.close()


def test_no_secret_is_readable_in_any_row(pg_runtime: Runtime, imported: dict[str, Any]) -> None:
    """Row text and a COPY dump of every table hold no token, secret, password or API key."""
    rows = _row_texts(pg_runtime)
    dump = _copy_dump(pg_runtime)
    # The dumps really contain the rows (non-secret fields are in clear).
    for visible in ("visible-conn-oauth", "visible-conn-apikey", "visible-client-id"):
        assert visible in rows and visible in dump
    assert "visible-tenant" in rows and "visible-metadata" in rows
    assert rows.count("v2.") >= len(imported["pks"]) + 2
    for name, secret in imported["secrets"].items():
        assert secret not in rows, name
        assert secret not in dump, name


def test_the_store_decrypts_what_it_wrote(pg_runtime: Runtime, imported: dict[str, Any]) -> None:
    """Through the store every credential and the client secret read back exactly."""
    with pg_runtime.store() as store:
        for name, pk in imported["pks"].items():
            conn = store.get_connection_by_pk(pk)
            assert conn is not None
            assert store.credentials(conn) == imported["credentials"][name]
        integration = store.get_integration("pg-int")
        assert integration is not None
        assert store.client_secret(integration) == imported["secrets"]["client-secret"]


def test_ciphertext_copied_to_another_row_fails(
    pg_runtime: Runtime, imported: dict[str, Any]
) -> None:
    """A ciphertext moved to another row or field is rejected with DecryptionError."""
    pks = imported["pks"]
    ints = imported["integrations"]
    with pg_runtime.engine.begin() as db:
        db.execute(
            text(
                "UPDATE connections SET credentials_enc = "
                "(SELECT credentials_enc FROM connections WHERE id = :src) WHERE id = :dst"
            ),
            {"src": pks["oauth"], "dst": pks["apikey"]},
        )
        db.execute(
            text(
                "UPDATE connections SET credentials_enc = "
                "(SELECT client_secret_enc FROM integrations WHERE id = :src) WHERE id = :dst"
            ),
            {"src": ints["first"], "dst": pks["basic"]},
        )
        db.execute(
            text(
                "UPDATE integrations SET client_secret_enc = "
                "(SELECT client_secret_enc FROM integrations WHERE id = :src) WHERE id = :dst"
            ),
            {"src": ints["first"], "dst": ints["second"]},
        )
    with pg_runtime.store() as store:
        for name in ("apikey", "basic"):
            target = store.get_connection_by_pk(pks[name])
            assert target is not None
            with pytest.raises(DecryptionError):
                store.credentials(target)
        second = store.get_integration("pg-int-2")
        assert second is not None
        with pytest.raises(DecryptionError):
            store.client_secret(second)
        # The source rows are untouched and still decrypt.
        source = store.get_connection_by_pk(pks["oauth"])
        assert source is not None
        assert store.credentials(source) == imported["credentials"]["oauth"]


def _row(rt: Runtime, pk: int) -> str:
    with rt.engine.connect() as conn:
        row = conn.execute(
            text("SELECT t::text FROM connections t WHERE id = :pk"), {"pk": pk}
        ).scalar_one()
    assert isinstance(row, str)
    return row


def test_cas_write_with_a_stale_version_changes_nothing(
    pg_runtime: Runtime, imported: dict[str, Any]
) -> None:
    """cas_write_refresh with a stale version returns False and leaves the row as it was."""
    pk = imported["pks"]["oauth"]
    with pg_runtime.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        version = conn.version
    before = _row(pg_runtime, pk)
    newer = {"type": "OAUTH2", "access_token": "at-cas", "refresh_token": "rt-cas"}
    write = RefreshWrite(newer, dt.datetime.now(dt.UTC))
    for stale in (version - 1, version + 1):
        with pg_runtime.store() as store:
            assert store.cas_write_refresh(pk, stale, write) is False
    assert _row(pg_runtime, pk) == before

    with pg_runtime.store() as store:
        assert store.cas_write_refresh(pk, version, write) is True
    after = _row(pg_runtime, pk)
    with pg_runtime.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        assert conn.version == version + 1
        assert store.credentials(conn) == newer
        # The version it just replaced is now stale too.
        older = RefreshWrite(imported["credentials"]["oauth"], dt.datetime.now(dt.UTC))
        assert store.cas_write_refresh(pk, version, older) is False
    assert _row(pg_runtime, pk) == after


def test_cas_write_never_revives_a_deleted_connection(
    pg_runtime: Runtime, imported: dict[str, Any]
) -> None:
    """A refresh finishing after the connection was deleted does not write its tokens back."""
    pk = imported["pks"]["oauth"]
    with pg_runtime.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        store.soft_delete(conn)
        store.session.flush()
        version = conn.version
    write = RefreshWrite({"type": "OAUTH2", "access_token": "late"}, dt.datetime.now(dt.UTC))
    with pg_runtime.store() as store:
        assert store.cas_write_refresh(pk, version, write) is False
    with pg_runtime.engine.connect() as db:
        enc = db.execute(
            text("SELECT credentials_enc FROM connections WHERE id = :pk"), {"pk": pk}
        ).scalar_one()
    assert enc is None
