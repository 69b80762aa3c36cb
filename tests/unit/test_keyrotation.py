"""Key rotation (SQLite): every stored secret ends up under the new key, resumably and safely."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from sqlalchemy import select
from tests.support import SECRET_KEY, make_runtime, make_settings

from freshtoken import logs
from freshtoken.cli import main
from freshtoken.crypto import Cipher, key_id
from freshtoken.errors import DecryptionError
from freshtoken.keyrotation import pending_count, rotate_keys
from freshtoken.runtime import Runtime
from freshtoken.settings import generate_key
from freshtoken.store.models import Connection, Integration
from freshtoken.store.repository import ConnectionStore, RefreshWrite

KEY_A = generate_key()
KEY_B = generate_key()
CLIENT_SECRET = "integration-secret-7731"

CREDENTIALS: list[dict[str, Any]] = [
    {
        "type": "OAUTH2",
        "access_token": "at-rot-1",
        "refresh_token": "rt-rot-1",
        "expires_at": "2030-01-01T00:00:00.000Z",
        "raw": {},
    },
    {
        "type": "OAUTH2",
        "access_token": "at-rot-2",
        "refresh_token": "rt-rot-2",
        "expires_at": "2030-01-01T00:00:00.000Z",
        "raw": {"scope": "x"},
    },
    {"type": "API_KEY", "apiKey": "api-key-rot-3"},
    {"type": "BASIC", "username": "user-4", "password": "password-rot-4"},
    {
        "type": "OAUTH2_CC",
        "token": "cc-token-rot-5",
        "client_id": "cc-client",
        "client_secret": "cc-secret-rot-5",
        "expires_at": "2030-01-01T00:00:00.000Z",
        "raw": {},
    },
]


def _raw(key: str) -> bytes:
    return base64.b64decode(key)


@pytest.fixture
def under_a(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on key A holding five connections, a deleted one and a secret integration."""
    rt = make_runtime(make_settings(tmp_path, encryption_key=KEY_A))
    with rt.store() as store:
        integration = store.create_integration(
            unique_key="rot", provider="oauth2", client_id="rot-client", client_secret=CLIENT_SECRET
        )
        store.create_integration(unique_key="rot-public", provider="oauth2", client_id="pub")
        for i, creds in enumerate(CREDENTIALS):
            store.upsert_connection(integration, connection_id=f"c{i}", credentials=creds)
        gone, _ = store.upsert_connection(integration, connection_id="gone", credentials={})
        store.soft_delete(gone)
    yield rt
    rt.close()


@pytest.fixture
def under_b(under_a: Runtime, tmp_path: Path) -> Iterator[Runtime]:
    """The same database with key B current and key A as an old key."""
    settings = make_settings(
        tmp_path,
        database_url=under_a.settings.resolved_database_url,
        encryption_key=KEY_B,
        encryption_old_keys=KEY_A,
    )
    rt = make_runtime(settings)
    yield rt
    rt.close()


def _stored(rt: Runtime) -> tuple[dict[int, str], dict[int, str]]:
    with rt.store() as store:
        conns = {
            row.id: row.credentials_enc
            for row in store.session.scalars(select(Connection))
            if row.credentials_enc is not None
        }
        integs = {
            row.id: row.client_secret_enc
            for row in store.session.scalars(select(Integration))
            if row.client_secret_enc is not None
        }
    return conns, integs


def _assert_all_under_b_only(rt: Runtime) -> None:
    conns, integs = _stored(rt)
    only_b = Cipher(_raw(KEY_B))
    only_a = Cipher(_raw(KEY_A))
    assert len(conns) == len(CREDENTIALS) and len(integs) == 1
    with rt.store() as store:
        rows = {c.id: c for c in store.session.scalars(select(Connection))}
        integ_rows = {i.id: i for i in store.session.scalars(select(Integration))}
        b_store = ConnectionStore(store.session, only_b, rt.clock)
        a_store = ConnectionStore(store.session, only_a, rt.clock)
        decrypted = []
        for pk, token in conns.items():
            # v2: bound to the row's binding, under key B only.
            assert token.startswith(f"v2.{key_id(_raw(KEY_B))}.")
            creds = b_store.credentials(rows[pk])
            assert creds in CREDENTIALS
            decrypted.append(creds["type"])
            with pytest.raises(DecryptionError):
                a_store.credentials(rows[pk])
        assert sorted(decrypted) == sorted(c["type"] for c in CREDENTIALS)
        for pk, token in integs.items():
            assert token.startswith(f"v2.{key_id(_raw(KEY_B))}.")
            assert b_store.client_secret(integ_rows[pk]) == CLIENT_SECRET


def test_everything_starts_under_key_a(under_a: Runtime, under_b: Runtime) -> None:
    """Before rotation all ciphertexts carry key A's id and the new runtime still reads them."""
    conns, integs = _stored(under_a)
    for token in [*conns.values(), *integs.values()]:
        assert token.startswith(f"v2.{key_id(_raw(KEY_A))}.")
    assert pending_count(under_a) == 0
    assert pending_count(under_b) == len(CREDENTIALS) + 1
    with under_b.store() as store:
        conn = store.get_connection("rot", "c0")
        assert conn is not None
        assert store.credentials(conn) == CREDENTIALS[0]


def test_rotation_moves_everything_to_the_new_key(under_b: Runtime) -> None:
    """rotate_keys in batches of 2 re-encrypts every connection and the integration secret."""
    batches: list[int] = []
    report = rotate_keys(under_b, batch_size=2, progress=batches.append)
    assert (report.connections, report.integrations, report.skipped_concurrent) == (5, 1, 0)
    assert batches == [2, 2, 1, 1]
    assert pending_count(under_b) == 0
    _assert_all_under_b_only(under_b)
    # A second run finds nothing to do.
    again = rotate_keys(under_b, batch_size=2)
    assert (again.connections, again.integrations) == (0, 0)


def test_rotated_rows_are_readable_with_only_the_new_key(under_b: Runtime, tmp_path: Path) -> None:
    """After rotation the old key can be dropped from the configuration."""
    rotate_keys(under_b, batch_size=3)
    only_b = make_runtime(make_settings(tmp_path, encryption_key=KEY_B))
    try:
        with only_b.store() as store:
            for i, creds in enumerate(CREDENTIALS):
                conn = store.get_connection("rot", f"c{i}")
                assert conn is not None
                assert store.credentials(conn) == creds
            integration = store.get_integration("rot")
            assert integration is not None
            assert store.client_secret(integration) == CLIENT_SECRET
    finally:
        only_b.close()


class _Interrupted(Exception):
    pass


def test_interrupted_rotation_resumes(under_b: Runtime) -> None:
    """A run stopped after its first batch committed leaves readable rows and a rerun finishes."""
    calls: list[int] = []

    def stop_on_second_batch(n: int) -> None:
        calls.append(n)
        if len(calls) == 2:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        rotate_keys(under_b, batch_size=2, progress=stop_on_second_batch)
    # Both batches reported to progress (2 rows each) are committed before it is called.
    assert pending_count(under_b) == len(CREDENTIALS) + 1 - 4
    with under_b.store() as store:
        for i, creds in enumerate(CREDENTIALS):
            conn = store.get_connection("rot", f"c{i}")
            assert conn is not None and store.credentials(conn) == creds
    report = rotate_keys(under_b, batch_size=2)
    assert (report.connections, report.integrations) == (1, 1)
    assert pending_count(under_b) == 0
    _assert_all_under_b_only(under_b)


def test_rows_reported_to_progress_are_committed(under_b: Runtime) -> None:
    """Once progress() has been told about a batch, that batch is committed."""

    def stop_at_once(_n: int) -> None:
        raise _Interrupted

    with pytest.raises(_Interrupted):
        rotate_keys(under_b, batch_size=2, progress=stop_at_once)
    assert pending_count(under_b) == len(CREDENTIALS) + 1 - 2


def test_concurrent_refresh_is_skipped_not_overwritten(
    under_b: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row whose version moved after rotation read it keeps the newer credentials."""
    kid = under_b.cipher.current_key_id
    with under_b.store() as store:
        stale_rows = store.live_rows_not_under_key(kid, 0, 100)
    target = stale_rows[0]
    newer = {"type": "OAUTH2", "access_token": "at-newer", "refresh_token": "rt-newer"}
    with under_b.store() as store:
        now = dt.datetime.now(dt.UTC)
        assert store.cas_write_refresh(target.id, target.version, RefreshWrite(newer, now))

    original = ConnectionStore.live_rows_not_under_key
    served: list[bool] = []

    def stale_first(self: ConnectionStore, key: str, after_pk: int, limit: int) -> list[Connection]:
        if not served:
            served.append(True)
            return stale_rows  # read before the refresh wrote: the target's version is behind
        return original(self, key, after_pk, limit)

    monkeypatch.setattr(ConnectionStore, "live_rows_not_under_key", stale_first)
    report = rotate_keys(under_b, batch_size=100)
    assert (report.connections, report.skipped_concurrent) == (len(CREDENTIALS) - 1, 1)
    with under_b.store() as store:
        conn = store.get_connection_by_pk(target.id)
        assert conn is not None
        assert store.credentials(conn) == newer
        assert conn.version == target.version + 1
    assert pending_count(under_b) == 0


# -- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    """The CLI configures logging onto CliRunner's stdout; put pytest's handlers back after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "httpx", "httpcore")
    named = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names}
    config = structlog.get_config()
    registered = set(logs._registered)
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, (handlers, lvl) in named.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).setLevel(lvl)
    structlog.configure(**config)
    logs._registered.clear()
    logs._registered.update(registered)


@pytest.mark.usefixtures("_restore_logging")
def test_cli_keys_rotate_prints_a_json_summary(
    under_a: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`freshtoken keys rotate` re-encrypts everything and reports remaining 0 as JSON."""
    for name in ("FRESHTOKEN_REDIS_URL", "FRESHTOKEN_PROVIDERS_FILE", "FRESHTOKEN_ENV"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "FRESHTOKEN_DATABASE_URL": under_a.settings.resolved_database_url,
        "FRESHTOKEN_ENCRYPTION_KEY": KEY_B,
        "FRESHTOKEN_ENCRYPTION_OLD_KEYS": KEY_A,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(main, ["keys", "rotate", "--batch-size", "2"], env=env)
    assert result.exit_code == 0, result.output
    summaries = [
        json.loads(line)
        for line in result.stdout.splitlines()
        if line.startswith("{") and '"remaining"' in line
    ]
    assert summaries == [
        {
            "connections": 5,
            "integrations": 1,
            "skipped_concurrent": 0,
            "undecryptable": [],
            "remaining": 0,
            "current_key_id": key_id(_raw(KEY_B)),
        }
    ]
    assert KEY_A not in result.output and KEY_B not in result.output
    _assert_all_under_b_only(under_a)


def _tamper(rt: Runtime) -> int:
    """Copy c1's ciphertext over c0's (its AAD names another row): c0 cannot be decrypted."""
    with rt.store() as store:
        rows = {c.connection_id: c for c in store.session.scalars(select(Connection))}
        rows["c0"].credentials_enc = rows["c1"].credentials_enc
        return rows["c0"].id


def test_rotation_skips_an_undecryptable_row_and_rotates_the_rest(under_b: Runtime) -> None:
    """One tampered row is skipped and reported by id; every other row is rotated."""
    bad = _tamper(under_b)
    report = rotate_keys(under_b, batch_size=2)
    assert report.undecryptable == [f"connection:{bad}"]
    assert (report.connections, report.integrations) == (len(CREDENTIALS) - 1, 1)
    assert pending_count(under_b) == 1
    conns, integs = _stored(under_b)
    prefix = f"v2.{key_id(_raw(KEY_B))}."
    assert [pk for pk, t in conns.items() if not t.startswith(prefix)] == [bad]
    assert all(t.startswith(prefix) for t in integs.values())


@pytest.mark.usefixtures("_restore_logging")
def test_cli_rotation_with_an_undecryptable_row_exits_non_zero(
    under_a: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI rotates the rest, names the bad row's id and exits 1."""
    for name in ("FRESHTOKEN_REDIS_URL", "FRESHTOKEN_PROVIDERS_FILE", "FRESHTOKEN_ENV"):
        monkeypatch.delenv(name, raising=False)
    bad = _tamper(under_a)
    env = {
        "FRESHTOKEN_DATABASE_URL": under_a.settings.resolved_database_url,
        "FRESHTOKEN_ENCRYPTION_KEY": KEY_B,
        "FRESHTOKEN_ENCRYPTION_OLD_KEYS": KEY_A,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(main, ["keys", "rotate"], env=env)
    assert result.exit_code == 1, result.output
    assert f"connection:{bad}" in result.stderr
    summary = json.loads(next(x for x in result.stdout.splitlines() if '"remaining"' in x))
    assert summary["undecryptable"] == [f"connection:{bad}"]
    assert (summary["connections"], summary["integrations"], summary["remaining"]) == (4, 1, 1)
