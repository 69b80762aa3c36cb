"""Read stamps (last_fetched_at) are written behind the read path, newest first, never lost."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.mockprovider import MockProvider
from freshtoken.store.fetchstamps import FetchStamps


def test_stamps_are_flushed_newest_wins_and_never_move_back(tmp_path: Path) -> None:
    """Several reads of one row flush as the newest stamp; an older stamp never overwrites it."""
    rt = make_runtime(make_settings(tmp_path))
    with MockProvider() as provider:
        pk, _ = add_oauth2_connection(rt, provider)
    stamps = FetchStamps(rt.session_factory, interval=3600)
    t0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    stamps.record(pk, t0)
    stamps.record(pk, t0 + dt.timedelta(seconds=5))
    stamps.record(pk, t0 + dt.timedelta(seconds=2))
    assert stamps.flush() == 1
    stamps.record(pk, t0 - dt.timedelta(days=1))
    stamps.flush()
    with rt.store() as store:
        row = store.get_connection_by_pk(pk)
        assert row is not None and row.last_fetched_at == t0 + dt.timedelta(seconds=5)
    stamps.close()
    rt.close()


def test_stamps_survive_a_failed_flush(tmp_path: Path) -> None:
    """If the database is away, pending stamps are kept and written by the next flush."""
    rt = make_runtime(make_settings(tmp_path))
    with MockProvider() as provider:
        pk, _ = add_oauth2_connection(rt, provider)
    when = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    # An outage: a session factory whose database cannot be opened.
    down = sessionmaker(bind=create_engine("sqlite:////nonexistent-dir/freshtoken.db"))
    stamps = FetchStamps(down, interval=3600)
    stamps.record(pk, when)
    assert stamps.flush() == 0
    stamps._session_factory = rt.session_factory
    assert stamps.flush() == 1
    with rt.store() as store:
        row = store.get_connection_by_pk(pk)
        assert row is not None and row.last_fetched_at == when
    rt.close()


def test_api_shutdown_writes_pending_stamps(tmp_path: Path) -> None:
    """Stopping the API (its lifespan ends) writes the read stamps still pending."""
    from fastapi.testclient import TestClient
    from tests.support import SECRET_KEY

    from freshtoken.api.app import create_app

    rt = make_runtime(make_settings(tmp_path))
    rt.fetch_stamps._interval = 3600
    with MockProvider() as provider:
        pk, _ = add_oauth2_connection(rt, provider, connection_id="c1")
    headers = {"Authorization": f"Bearer {SECRET_KEY}"}
    with TestClient(create_app(rt), headers=headers) as client:
        assert client.get("/connections/c1?provider_config_key=mock").status_code == 200
        with rt.store() as store:
            row = store.get_connection_by_pk(pk)
            assert row is not None and row.last_fetched_at is None
    with rt.store() as store:
        row = store.get_connection_by_pk(pk)
        assert row is not None and row.last_fetched_at is not None
    rt.close()
