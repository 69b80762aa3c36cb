"""Webhook claims on PostgreSQL: concurrent deliveries of one queue send each row once, in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.runtime import Runtime
from freshtoken.webhooks.delivery import WebhookSender
from tests.e2e_helpers import drop_schema
from tests.support import add_oauth2_connection, make_runtime, make_settings, pg_schema_url
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


class _Queue:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_task(self, _name: str, args: tuple[int]) -> None:
        self.sent.append(args[0])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP receiver."""
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def webhook_pg_runtime(tmp_path: Path, receiver: WebhookReceiver) -> Iterator[Runtime]:
    """A runtime on a fresh PostgreSQL schema, sending webhooks to the receiver."""
    url = pg_schema_url()
    rt = make_runtime(
        make_settings(tmp_path, database_url=url, webhook_url=receiver.url, db_pool_size=12)
    )
    rt.celery_app = _Queue()
    yield rt
    rt.close()
    drop_schema(url)


def test_concurrent_workers_send_each_row_once_and_in_order(
    webhook_pg_runtime: Runtime, receiver: WebhookReceiver
) -> None:
    """Ten workers handed the later of two events at once: creation then override, once each."""
    with MockProvider(MockProviderConfig()) as provider:
        add_oauth2_connection(webhook_pg_runtime, provider, connection_id="acme")
        add_oauth2_connection(webhook_pg_runtime, provider, connection_id="acme")
    creation, override = webhook_pg_runtime.celery_app.sent
    probe = WebhookSender(
        settings=webhook_pg_runtime.settings,
        session_factory=webhook_pg_runtime.session_factory,
        clock=webhook_pg_runtime.clock,
        http=httpx.Client(),
    )
    # The sweep offers only the head of the connection's queue.
    assert probe.sweep_once() == [creation]
    barrier = threading.Barrier(10)
    clients = [httpx.Client(follow_redirects=False) for _ in range(10)]

    def run(client: httpx.Client) -> None:
        sender = WebhookSender(
            settings=webhook_pg_runtime.settings,
            session_factory=webhook_pg_runtime.session_factory,
            clock=webhook_pg_runtime.clock,
            http=client,
        )
        barrier.wait()
        sender.deliver(override)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    got = receiver.received()
    assert [r.json()["operation"] for r in got] == ["creation", "override"]
    assert probe.sweep_once() == []
    probe.http.close()
    assert len({r.event_id for r in got}) == 2
