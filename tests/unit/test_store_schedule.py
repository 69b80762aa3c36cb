"""``next_refresh_at`` after every store write that changes credentials or schedule (SQLite).

The rule is :func:`freshtoken.store.schedule.next_refresh_at`: a claim's lease while the row is
claimed; never for a row that left the scan; the retry time after a transient failure; otherwise
the plan of :func:`freshtoken.refresh.policy.plan_next_refresh` for the row as stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import make_runtime, make_settings

from freshtoken.clock import FakeClock
from freshtoken.demo import DEMO_INTEGRATION, import_demo_connections
from freshtoken.keyrotation import rotate_keys
from freshtoken.refresh import policy
from freshtoken.runtime import Runtime
from freshtoken.settings import generate_key
from freshtoken.store.credentials import iso
from freshtoken.store.models import Connection
from freshtoken.store.repository import RefreshWrite
from freshtoken.store.schedule import claim_due, extend_claim, next_refresh_at

KEY_A = generate_key()
KEY_B = generate_key()
LIFETIME = 3600.0


@pytest.fixture
def clock() -> FakeClock:
    """A frozen clock; tests move it explicitly."""
    return FakeClock()


@pytest.fixture
def rt(tmp_path: Path, clock: FakeClock) -> Iterator[Runtime]:
    """A migrated SQLite runtime on the frozen clock, under key A."""
    runtime = make_runtime(make_settings(tmp_path, encryption_key=KEY_A), clock=clock)
    yield runtime
    runtime.close()


def _creds(clock: FakeClock, expires_in: float, token: str = "at") -> dict[str, Any]:  # noqa: S107
    expires = clock.now() + dt.timedelta(seconds=expires_in)
    return {
        "type": "OAUTH2",
        "access_token": token,
        "refresh_token": f"rt-{token}",
        "expires_at": iso(expires),
        "raw": {},
    }


def _import(rt: Runtime, connection_id: str, credentials: dict[str, Any]) -> int:
    with rt.store() as store:
        integration = store.get_integration("int") or store.create_integration(
            unique_key="int", provider="oauth2", client_id="cid", client_secret="secret"
        )
        conn, _ = store.upsert_connection(
            integration,
            connection_id=connection_id,
            credentials=credentials,
            connection_config={"token_url": "http://127.0.0.1:9/oauth/token"},
        )
        return conn.id


def _row(rt: Runtime, pk: int) -> Connection:
    with rt.session_factory() as session:
        conn = session.get(Connection, pk)
        assert conn is not None
        return conn


def _planned(rt: Runtime, pk: int) -> dt.datetime | None:
    """What the policy plans for the row as stored now."""
    conn = _row(rt, pk)
    return policy.plan_next_refresh(
        conn, rt.catalog.get(conn.provider), rt.settings, rt.clock.now()
    )


def _fail(rt: Runtime, pk: int, *, needs_reauth: bool, retry_in: float = 4.0) -> dt.datetime:
    now = rt.clock.now()
    retry_at = now + dt.timedelta(seconds=retry_in)
    with rt.store() as store:
        assert store.get_connection_by_pk(pk) is not None  # as the refresher reads it first
        store.write_failure(
            pk,
            failed_at=now,
            attempts=1,
            exhausted=False,
            needs_reauth=needs_reauth,
            error_code="invalid_grant" if needs_reauth else "server_error",
            log_id="log-1",
            next_refresh_at=retry_at,
        )
    return retry_at


def _claim(rt: Runtime, lease_seconds: float) -> list[int]:
    """Claim every due row with this lease; the claimed pks."""
    now = rt.clock.now()
    with rt.store() as store:
        claims = claim_due(
            store.session, now, 100, lambda _row: now + dt.timedelta(seconds=lease_seconds)
        )
    return [c.row.id for c in claims]


# -- the rule -------------------------------------------------------------------------------------


def test_the_rule_orders_lease_then_dropped_then_retry_then_plan() -> None:
    """A live claim wins; then a row that left the scan; then the retry time; then the plan."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    plan = now + dt.timedelta(hours=1)
    retry = now + dt.timedelta(seconds=4)
    lease = now + dt.timedelta(seconds=90)

    def planner(conn: Connection) -> dt.datetime | None:
        return None if conn.needs_reauth else plan

    assert next_refresh_at(Connection(), planner, now) == plan
    assert next_refresh_at(Connection(refresh_claimed_until=lease), planner, now) == lease
    failing = Connection(last_refresh_failure=now, next_refresh_at=retry)
    assert next_refresh_at(failing, planner, now) == retry
    dead = Connection(last_refresh_failure=now, next_refresh_at=retry, needs_reauth=True)
    assert next_refresh_at(dead, planner, now) is None
    deleted = Connection(deleted_at=now, next_refresh_at=retry, last_refresh_failure=now)
    assert next_refresh_at(deleted, None, now) is None
    expired_claim = Connection(refresh_claimed_until=now - dt.timedelta(seconds=1))
    assert next_refresh_at(expired_claim, planner, now) == plan
    assert next_refresh_at(Connection(), None, now) is None


# -- each write path ------------------------------------------------------------------------------


def test_import_and_override_plan_from_the_new_credentials(rt: Runtime, clock: FakeClock) -> None:
    """An import plans from its token; an override of a failed row plans from the new one."""
    pk = _import(rt, "c1", _creds(clock, LIFETIME))
    assert _row(rt, pk).next_refresh_at is not None
    assert _row(rt, pk).next_refresh_at == _planned(rt, pk)

    _fail(rt, pk, needs_reauth=True)
    assert _row(rt, pk).next_refresh_at is None
    clock.advance(60)
    _import(rt, "c1", _creds(clock, 600, token="new"))
    assert _row(rt, pk).needs_reauth is False
    assert _row(rt, pk).next_refresh_at == _planned(rt, pk)


def test_refresh_write_plans_from_the_refreshed_token(rt: Runtime, clock: FakeClock) -> None:
    """The compare-and-set refresh write releases the claim and plans from the new expiry."""
    pk = _import(rt, "c1", _creds(clock, 100))
    clock.advance(60)  # a 100 s token is due 50 s before expiry
    assert _claim(rt, 90) == [pk]
    version = _row(rt, pk).version
    clock.advance(30)
    with rt.store() as store:
        write = RefreshWrite(_creds(clock, LIFETIME, token="fresh"), clock.now())
        assert store.cas_write_refresh(pk, version, write)
    row = _row(rt, pk)
    assert row.refresh_claimed_until is None
    assert row.next_refresh_at is not None
    assert row.next_refresh_at > clock.now()
    assert row.next_refresh_at == _planned(rt, pk)


def test_failures_keep_the_retry_time_or_leave_the_scan(rt: Runtime, clock: FakeClock) -> None:
    """A transient failure is retried at the backoff's time; a permanent one is never due."""
    transient = _import(rt, "transient", _creds(clock, 100))
    permanent = _import(rt, "permanent", _creds(clock, 100))
    retry_at = _fail(rt, transient, needs_reauth=False)
    _fail(rt, permanent, needs_reauth=True)
    assert _row(rt, transient).next_refresh_at == retry_at
    assert _row(rt, permanent).next_refresh_at is None
    assert _planned(rt, permanent) is None


def test_soft_delete_is_never_due(rt: Runtime, clock: FakeClock) -> None:
    """A deleted connection leaves the scan, whatever its state was."""
    pk = _import(rt, "c1", _creds(clock, 100))
    _fail(rt, pk, needs_reauth=False)
    with rt.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        store.soft_delete(conn)
    assert _row(rt, pk).next_refresh_at is None


def test_claims_and_extended_claims_are_due_when_their_lease_ends(
    rt: Runtime, clock: FakeClock
) -> None:
    """The scan's claim and a queued retry's extension set the lease; a dropped row stays out."""
    due = _import(rt, "due", _creds(clock, 100))
    dropped = _import(rt, "dropped", _creds(clock, 100))
    _fail(rt, dropped, needs_reauth=True)
    clock.advance(60)
    assert _claim(rt, 90) == [due]
    lease = clock.now() + dt.timedelta(seconds=90)
    assert (_row(rt, due).next_refresh_at, _row(rt, due).refresh_claimed_until) == (lease, lease)

    until = clock.now() + dt.timedelta(seconds=300)
    with rt.store() as store:
        extend_claim(store.session, due, until, clock.now())
        extend_claim(store.session, dropped, until, clock.now())
    assert (_row(rt, due).next_refresh_at, _row(rt, due).refresh_claimed_until) == (until, until)
    assert _row(rt, dropped).next_refresh_at is None
    assert _row(rt, dropped).refresh_claimed_until is None


def test_key_rotation_keeps_every_row_schedule(
    rt: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    """Re-encryption changes no credentials: plan, lease and retry time all stay as they were."""
    planned = _import(rt, "planned", _creds(clock, LIFETIME))
    claimed = _import(rt, "claimed", _creds(clock, 100))
    failing = _import(rt, "failing", _creds(clock, 100))
    clock.advance(60)
    assert _claim(rt, 90) == [claimed, failing]  # both inside their refresh lead
    retry_at = _fail(rt, failing, needs_reauth=False)
    before = {pk: _row(rt, pk).next_refresh_at for pk in (planned, claimed, failing)}
    assert before[failing] == retry_at

    settings = make_settings(
        tmp_path,
        database_url=rt.settings.resolved_database_url,
        encryption_key=KEY_B,
        encryption_old_keys=KEY_A,
    )
    under_b = make_runtime(settings, clock=clock)
    try:
        report = rotate_keys(under_b)
    finally:
        under_b.close()
    assert report.connections == 3
    assert {pk: _row(rt, pk).next_refresh_at for pk in before} == before
    assert before[planned] == _planned(rt, planned)


def test_integration_rename_keeps_every_row_schedule(rt: Runtime, clock: FakeClock) -> None:
    """Re-keying an integration re-encrypts its connections; their due times do not move."""
    planned = _import(rt, "planned", _creds(clock, LIFETIME))
    claimed = _import(rt, "claimed", _creds(clock, 100))
    clock.advance(60)
    assert _claim(rt, 90) == [claimed]
    before = {pk: _row(rt, pk).next_refresh_at for pk in (planned, claimed)}
    with rt.store() as store:
        integration = store.get_integration("int")
        assert integration is not None
        store.update_integration(integration, unique_key="renamed")
    assert {pk: _row(rt, pk).next_refresh_at for pk in before} == before
    assert {_row(rt, pk).provider_config_key for pk in before} == {"renamed"}


def test_demo_seed_plans_from_the_token_lifetime(rt: Runtime) -> None:
    """Demo connections were issued a lifetime before expiry: the plan counts from that issue."""
    tokens = iter(range(100))

    def seed() -> dict[str, str]:
        n = next(tokens)
        return {"access_token": f"at-{n}", "refresh_token": f"rt-{n}"}

    ids = import_demo_connections(
        rt,
        seed,
        token_url="http://127.0.0.1:9/oauth/token",
        client_id="demo-client",
        client_secret="demo-secret",
        count=2,
        lifetime_seconds=120,
    )
    with rt.store() as store:
        pks = [
            conn.id
            for cid in ids
            if (conn := store.get_connection(DEMO_INTEGRATION, cid)) is not None
        ]
    assert len(pks) == 2
    for pk in pks:
        row = _row(rt, pk)
        assert row.expires_at is not None and row.last_refresh_success is not None
        assert (row.expires_at - row.last_refresh_success).total_seconds() == 120
        assert row.next_refresh_at == _planned(rt, pk)
