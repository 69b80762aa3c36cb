"""Auth webhooks on SQLite: recorded in the state change's transaction, delivered once, in order.

A real HTTP receiver and the real HTTP mock provider; the Celery hand-off after commit is replaced
by a list so each test decides when delivery runs (the task itself is tested in e2e).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs
from tests.support import SECRET_KEY, add_oauth2_connection, make_runtime, make_settings
from tests.webhook_receiver import WebhookReceiver

from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.refresh.service import RefreshService
from freshtoken.runtime import Runtime
from freshtoken.store.models import WebhookOutbox
from freshtoken.webhooks.delivery import WebhookSender
from freshtoken.webhooks.payload import signature_headers

DELIVERY_FIELDS = {
    "event_id",
    "type",
    "operation",
    "connection_id",
    "provider_config_key",
    "url_host",
    "http_status",
    "attempt",
    "duration_ms",
    "outcome",
}


class FakeCelery:
    """Stands in for the Celery app: remembers what was enqueued after commit."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.fail = False

    def send_task(self, name: str, args: tuple[int]) -> None:
        """Record (or fail, to simulate a broker outage)."""
        if self.fail:
            raise ConnectionError("broker down")
        assert name == "freshtoken.deliver_webhook"
        self.sent.append(args[0])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP receiver."""
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def clock() -> FakeClock:
    """Wall time for the outbox and retries, moved by the tests."""
    return FakeClock(dt.datetime.now(dt.UTC))


def _runtime(tmp_path: Path, clock: FakeClock, **settings: Any) -> tuple[Runtime, FakeCelery]:
    rt = make_runtime(make_settings(tmp_path, **settings), clock=clock)
    celery = FakeCelery()
    rt.celery_app = celery
    return rt, celery


@pytest.fixture
def env(
    tmp_path: Path, clock: FakeClock, receiver: WebhookReceiver
) -> Iterator[tuple[Runtime, FakeCelery]]:
    """A runtime sending webhooks to the receiver (primary URL), and its fake queue."""
    rt, celery = _runtime(
        tmp_path,
        clock,
        webhook_url=receiver.url + "/primary",
        webhook_retry_base_seconds=1.0,
        refresh_max_failure_days=2,
    )
    yield rt, celery
    rt.close()


def _rows(rt: Runtime) -> list[WebhookOutbox]:
    with rt.session_factory() as session:
        return list(session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)))


def _service(rt: Runtime) -> RefreshService:
    service = rt.require_refresh_service()
    return service


def _deliver_all(rt: Runtime, celery: FakeCelery) -> None:
    sender = rt.webhook_sender()
    for outbox_id in celery.sent:
        sender.deliver(outbox_id)
    celery.sent.clear()


# -- recording ------------------------------------------------------------------------------------


def test_import_then_reimport_records_creation_then_override_enqueued_after_commit(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider, receiver: WebhookReceiver
) -> None:
    """Import → one creation webhook; re-import → one override; each enqueued after commit."""
    rt, celery = env
    pk, _ = add_oauth2_connection(rt, mock_provider, connection_id="acme")
    (row,) = _rows(rt)
    assert (row.operation, row.success, row.status, row.connection_pk) == (
        "creation",
        True,
        "pending",
        pk,
    )
    assert celery.sent == [row.id]
    add_oauth2_connection(rt, mock_provider, connection_id="acme")
    assert [r.operation for r in _rows(rt)] == ["creation", "override"]
    _deliver_all(rt, celery)
    bodies = [r.json() for r in receiver.received()]
    assert [(b["operation"], b["success"]) for b in bodies] == [
        ("creation", True),
        ("override", True),
    ]
    first = receiver.received()[0]
    assert first.body == row.body.encode()
    assert (
        first.headers["x-nango-hmac-sha256"]
        == (signature_headers(SECRET_KEY, first.body)["X-Nango-Hmac-Sha256"])
    )
    assert bodies[0]["connectionId"] == "acme"
    assert bodies[0]["from"] == "nango" and bodies[0]["type"] == "auth"
    assert {r.event_id for r in receiver.received()} == {r.event_id for r in _rows(rt)}


def test_a_rolled_back_import_records_and_sends_nothing(
    env: tuple[Runtime, FakeCelery],
) -> None:
    """The webhook row is part of the transaction: a rollback takes it away, nothing enqueued."""
    rt, celery = env
    with pytest.raises(RuntimeError), rt.store() as store:
        integration = store.create_integration(unique_key="mock", provider="oauth2")
        store.upsert_connection(
            integration, connection_id="x", credentials={"type": "OAUTH2", "access_token": "a"}
        )
        raise RuntimeError("abort")
    assert _rows(rt) == []
    assert celery.sent == []


def test_permanent_failure_sends_one_webhook_whatever_the_retries_then_recovery(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider, receiver: WebhookReceiver
) -> None:
    """invalid_grant → one failure webhook; more failures → none; a later success → recovery."""
    rt, celery = env
    pk, _ = add_oauth2_connection(rt, mock_provider, connection_id="acme")
    _deliver_all(rt, celery)
    mock_provider.inject("invalid_grant", count=3)  # injected failures leave the tokens alone
    for trigger in ("scheduled", "forced", "manual"):
        result = _service(rt).refresh(pk, trigger=trigger, force=True)
        assert result.outcome == "failed"
    failures = [r for r in _rows(rt) if r.operation == "refresh"]
    assert [(r.success, r.status) for r in failures] == [(False, "pending")]
    _deliver_all(rt, celery)
    body = receiver.received()[-1].json()
    assert body["operation"] == "refresh" and body["success"] is False
    assert body["error"]["type"] == "refresh_token_external_error"
    assert "invalid_grant" in body["error"]["description"]

    # The API keeps reporting the failure in errors[].
    from fastapi.testclient import TestClient

    from freshtoken.api.app import create_app

    with TestClient(create_app(rt)) as client:
        got = client.get(
            "/connections/acme",
            params={"provider_config_key": "mock"},
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
        )
    assert got.status_code == 200
    assert [e["type"] for e in got.json()["errors"]] == ["auth"]

    # The provider works again: a forced refresh recovers the connection (one webhook).
    assert _service(rt).refresh(pk, trigger="manual", force=True).outcome == "success"
    assert _service(rt).refresh(pk, trigger="manual", force=True).outcome == "success"
    recoveries = [r for r in _rows(rt) if r.operation == "refresh" and r.success]
    assert len(recoveries) == 1
    _deliver_all(rt, celery)
    last = receiver.received()[-1].json()
    assert (last["operation"], last["success"]) == ("refresh", True)
    assert "error" not in last


def test_transient_failures_send_nothing_until_the_connection_is_exhausted(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider, clock: FakeClock
) -> None:
    """5xx failures on one day send nothing; exhaustion (a day later) sends one failure."""
    rt, celery = env
    pk, _ = add_oauth2_connection(rt, mock_provider, connection_id="acme")
    celery.sent.clear()
    mock_provider.inject("500", count=3)
    _service(rt).refresh(pk, trigger="scheduled", force=True)
    _service(rt).refresh(pk, trigger="scheduled", force=True)
    assert [r.operation for r in _rows(rt)] == ["creation"]
    clock.advance(86400 + 60)
    _service(rt).refresh(pk, trigger="scheduled", force=True)
    failure = _rows(rt)[-1]
    assert (failure.operation, failure.success) == ("refresh", False)
    assert '"connection_refresh_exhausted"' in failure.body
    assert len(celery.sent) == 1


def test_switches_secondary_url_and_override(
    tmp_path: Path, clock: FakeClock, mock_provider: MockProvider, receiver: WebhookReceiver
) -> None:
    """Creation off → no row; primary + secondary → two rows, one event id; override → one."""
    rt, celery = _runtime(
        tmp_path,
        clock,
        webhook_url=receiver.url + "/primary",
        webhook_secondary_url=receiver.url + "/secondary",
        webhook_on_auth_creation=False,
    )
    try:
        add_oauth2_connection(rt, mock_provider, connection_id="a")
        assert _rows(rt) == []
        add_oauth2_connection(rt, mock_provider, connection_id="a")  # override: switch still on
        rows = _rows(rt)
        assert sorted(r.target for r in rows) == ["primary", "secondary"]
        assert len({r.event_id for r in rows}) == 1
        with rt.store() as store:
            conn = store.get_connection("mock", "a")
            assert conn is not None
            conn.webhook_url_override = receiver.url + "/override"
        add_oauth2_connection(rt, mock_provider, connection_id="a")
        assert [r.target for r in _rows(rt)[2:]] == ["override"]
        _deliver_all(rt, celery)
        assert sorted(r.path for r in receiver.received()) == [
            "/override",
            "/primary",
            "/secondary",
        ]
    finally:
        rt.close()


def test_nothing_is_recorded_without_a_url(
    tmp_path: Path, clock: FakeClock, mock_provider: MockProvider
) -> None:
    """Webhooks are off by default: no row, no enqueue."""
    rt, celery = _runtime(tmp_path, clock)
    try:
        add_oauth2_connection(rt, mock_provider)
        assert _rows(rt) == []
        assert celery.sent == []
    finally:
        rt.close()


def test_a_failed_enqueue_is_picked_up_by_the_sweep(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider
) -> None:
    """The broker is down after commit: the import stands and the sweep finds the row."""
    rt, celery = env
    celery.fail = True
    with capture_logs() as logs:
        add_oauth2_connection(rt, mock_provider)
    (row,) = _rows(rt)
    assert [e["event"] for e in logs if e["event"].startswith("webhook.")] == [
        "webhook.enqueue_failed"
    ]
    assert rt.webhook_sender().sweep_once() == [row.id]


# -- delivery -------------------------------------------------------------------------------------


def test_500_twice_then_200_sends_the_same_event_three_times_and_then_nothing(
    env: tuple[Runtime, FakeCelery],
    mock_provider: MockProvider,
    receiver: WebhookReceiver,
    clock: FakeClock,
) -> None:
    """Retries wait with backoff; the 200 ends it; a redelivered task sends nothing more."""
    rt, celery = env
    receiver.script.extend([500, 500])
    add_oauth2_connection(rt, mock_provider)
    (outbox_id,) = celery.sent
    sender = rt.webhook_sender()
    with capture_logs() as logs:
        first = sender.deliver(outbox_id)
        assert first.retry_in is not None and 0.5 <= first.retry_in <= 1.0
        assert sender.deliver(outbox_id).retry_in is None  # not due yet: nothing sent
        assert len(receiver.received()) == 1
        clock.advance(first.retry_in)
        second = sender.deliver(outbox_id)
        assert second.retry_in is not None and 1.0 <= second.retry_in <= 2.0
        clock.advance(second.retry_in)
        assert sender.deliver(outbox_id).retry_in is None
        sender.deliver(outbox_id)  # a redelivered task
        clock.advance(3600)
        sender.deliver(outbox_id)
        assert sender.sweep_once() == []
    got = receiver.received()
    assert len(got) == 3
    assert len({r.event_id for r in got}) == 1
    assert [r.headers["x-freshtoken-delivery-attempt"] for r in got] == ["1", "2", "3"]
    lines = [e for e in logs if e["event"] == "webhook.delivery"]
    assert [(e["outcome"], e["http_status"], e["attempt"]) for e in lines] == [
        ("retry", 500, 1),
        ("retry", 500, 2),
        ("delivered", 200, 3),
    ]
    assert all(set(e) >= DELIVERY_FIELDS for e in lines)
    assert lines[0]["url_host"] == "127.0.0.1"
    assert _rows(rt)[0].status == "delivered"


@pytest.mark.parametrize("status", [302, 400, 410])
def test_redirects_and_client_errors_are_not_followed_or_retried(
    env: tuple[Runtime, FakeCelery],
    mock_provider: MockProvider,
    receiver: WebhookReceiver,
    status: int,
) -> None:
    """3xx is not followed and, like 4xx, fails at once: one request, row failed."""
    rt, celery = env
    receiver.redirect_to = receiver.url + "/elsewhere"
    receiver.script.append(status)
    add_oauth2_connection(rt, mock_provider)
    with capture_logs() as logs:
        _deliver_all(rt, celery)
    assert [r.path for r in receiver.received()] == ["/primary"]
    assert _rows(rt)[0].status == "failed"
    (line,) = [e for e in logs if e["event"] == "webhook.delivery"]
    assert (line["outcome"], line["http_status"]) == ("failed", status)


def test_network_errors_retry_until_the_deadline_then_fail(
    tmp_path: Path, clock: FakeClock, mock_provider: MockProvider
) -> None:
    """Nothing listening: retried with growing waits, then failed once the deadline is near."""
    rt, celery = _runtime(
        tmp_path,
        clock,
        webhook_url="http://127.0.0.1:9/hook",
        webhook_retry_base_seconds=10.0,
        webhook_deadline_seconds=60.0,
    )
    try:
        add_oauth2_connection(rt, mock_provider)
        (outbox_id,) = celery.sent
        sender = rt.webhook_sender()
        waits = []
        while (wait := sender.deliver(outbox_id).retry_in) is not None:
            waits.append(wait)
            clock.advance(wait)
        assert len(waits) >= 2 and waits[1] > waits[0] / 2
        (row,) = _rows(rt)
        assert row.status == "failed"
        assert row.finished_at is not None and row.finished_at <= row.deadline_at
    finally:
        rt.close()


def test_rows_of_one_connection_are_delivered_in_order(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider, receiver: WebhookReceiver
) -> None:
    """A task for the later event delivers the earlier one first; a retrying head holds the rest."""
    rt, celery = env
    receiver.script.append(503)
    add_oauth2_connection(rt, mock_provider, connection_id="acme")
    add_oauth2_connection(rt, mock_provider, connection_id="acme")
    creation_id, override_id = celery.sent
    sender = rt.webhook_sender()
    result = sender.deliver(override_id)
    # The creation went first and got a 503; the override waits behind it.
    assert [r.json()["operation"] for r in receiver.received()] == ["creation"]
    assert result.retry_in is not None
    rt.clock.advance(result.retry_in)  # type: ignore[attr-defined]
    sender.deliver(override_id)
    assert [r.json()["operation"] for r in receiver.received()] == [
        "creation",
        "creation",
        "override",
    ]
    assert {r.status for r in _rows(rt)} == {"delivered"}
    assert creation_id < override_id


def test_concurrent_deliveries_of_one_row_send_it_once(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider, receiver: WebhookReceiver
) -> None:
    """Eight workers handed the same row at once (redelivery, sweep, retry): one POST."""
    rt, celery = env
    add_oauth2_connection(rt, mock_provider)
    (outbox_id,) = celery.sent
    barrier = threading.Barrier(8)
    senders = [
        WebhookSender(
            settings=rt.settings,
            session_factory=rt.session_factory,
            clock=rt.clock,
            http=httpx.Client(follow_redirects=False),
        )
        for _ in range(8)
    ]

    def run(sender: WebhookSender) -> None:
        barrier.wait()
        sender.deliver(outbox_id)

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in senders:
        s.http.close()
    assert len(receiver.received()) == 1
    assert _rows(rt)[0].status == "delivered"


def test_one_run_sends_at_most_three_rows_and_names_the_next(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider, receiver: WebhookReceiver
) -> None:
    """Five queued events of one connection: a run sends three in order and hands on the fourth."""
    rt, celery = env
    for _ in range(5):
        add_oauth2_connection(rt, mock_provider, connection_id="acme")
    ids = list(celery.sent)
    first = rt.webhook_sender().deliver(ids[0])
    assert first.attempts == 3 and first.continue_with == ids[3]
    second = rt.webhook_sender().deliver(ids[3])
    assert second.attempts == 2 and second.continue_with is None
    got = [r.event_id for r in receiver.received()]
    assert got == [r.event_id for r in _rows(rt)]


def test_a_read_that_finds_the_token_revoked_sends_the_failure_webhook(
    env: tuple[Runtime, FakeCelery], mock_provider: MockProvider
) -> None:
    """trigger=on_read: the API read's refresh is rejected → one failure row; the next read none."""
    from fastapi.testclient import TestClient

    from freshtoken.api.app import create_app

    rt, celery = env
    add_oauth2_connection(rt, mock_provider, connection_id="acme", expires_in=-5)
    mock_provider.inject("invalid_grant")
    with capture_logs() as logs, TestClient(create_app(rt)) as client:
        for _ in range(2):
            client.get(
                "/connections/acme",
                params={"provider_config_key": "mock"},
                headers={"Authorization": f"Bearer {SECRET_KEY}"},
            )
    triggers = [e["trigger"] for e in logs if e["event"] == "token.refresh"]
    assert triggers == ["on_read"]
    assert [(r.operation, r.success) for r in _rows(rt)] == [("creation", True), ("refresh", False)]
    assert len(celery.sent) == 2


def test_a_claim_left_by_a_dead_worker_expires_and_the_sweep_sends_the_row(
    env: tuple[Runtime, FakeCelery],
    mock_provider: MockProvider,
    receiver: WebhookReceiver,
    clock: FakeClock,
) -> None:
    """A worker that died holding the claim blocks the row only until its lease runs out."""
    rt, celery = env
    add_oauth2_connection(rt, mock_provider)
    (outbox_id,) = celery.sent
    sender = rt.webhook_sender()
    assert isinstance(sender._claim(outbox_id), WebhookOutbox)  # ...and the worker dies here
    assert sender.sweep_once() == []
    assert sender.deliver(outbox_id).attempts == 0
    clock.advance(sender.lease_seconds + 1)
    assert sender.sweep_once() == [outbox_id]
    assert sender.deliver(outbox_id).attempts == 1
    assert len(receiver.received()) == 1


def test_an_endless_answer_is_read_only_up_to_the_bound(
    tmp_path: Path, clock: FakeClock, mock_provider: MockProvider
) -> None:
    """A receiver announcing 1 GB and streaming forever: 64 KiB are read, the 200 counts, fast."""
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()
    sent_bytes = [0]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
            chunk = b"x" * 65536
            deadline = time.monotonic() + 10
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    conn.sendall(chunk)
                    sent_bytes[0] += len(chunk)
                    time.sleep(0.05)  # a trickle: only a bounded reader gets out early
            except OSError:
                return  # the sender hung up: what the bound is for

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    rt, celery = _runtime(tmp_path, clock, webhook_url=f"http://127.0.0.1:{port}/hook")
    try:
        add_oauth2_connection(rt, mock_provider)
        started = time.monotonic()
        with capture_logs() as logs:
            rt.webhook_sender().deliver(celery.sent[0])
        elapsed = time.monotonic() - started
        (line,) = [e for e in logs if e["event"] == "webhook.delivery"]
        assert (line["outcome"], line["http_status"]) == ("delivered", 200)
        assert elapsed < 5, elapsed
    finally:
        stop.set()
        thread.join(timeout=15)
        server.close()
        rt.close()
    assert not thread.is_alive()
