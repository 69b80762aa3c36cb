"""The forced-refresh rule in one process, step by step (the 2-process storm is in integration).

A forced read is satisfied by any refresh whose provider request was sent after it arrived; forced
reads arriving while one is in flight share the next one; non-forced reads share whatever is in
flight. The mock provider answers after 0.5 s, so "in flight" is a window the test can aim at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import add_oauth2_connection, make_runtime, make_settings

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh.service import RefreshService
from freshtoken.runtime import Runtime


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Runtime, MockProvider, RefreshService]]:
    """A SQLite runtime, a provider answering after 0.5 s, and the refresh service."""
    runtime = make_runtime(make_settings(tmp_path))
    with MockProvider(MockProviderConfig(latency_seconds=0.5)) as provider:
        service = runtime.require_refresh_service()
        yield runtime, provider, service
    runtime.close()


def _row(runtime: Runtime, pk: int) -> tuple[Any, dict[str, Any]]:
    with runtime.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        return conn, store.credentials(conn)


async def _until_sent(provider: MockProvider, calls: int) -> None:
    """Wait until the provider has received ``calls`` refresh requests."""
    for _ in range(400):
        if provider.stats()["refresh_calls"] >= calls:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the provider never received {calls} refresh requests")


def test_forced_reads_during_a_flight_share_the_next_refresh(
    setup: tuple[Runtime, MockProvider, RefreshService],
) -> None:
    """Reads arriving while a forced refresh is at the provider: the forced ones share one next
    refresh and get its token; a non-forced one is served by the refresh in flight."""
    runtime, provider, service = setup
    pk, family = add_oauth2_connection(runtime, provider)

    async def scenario() -> dict[str, str]:
        conn, creds = _row(runtime, pk)

        async def read(force: bool) -> str:
            _, served = await service.arefresh_for_read(conn, creds, force=force)
            return str(served["access_token"])

        first = asyncio.create_task(read(True))
        await _until_sent(provider, 1)  # the first refresh is now at the provider
        late = [asyncio.create_task(read(True)) for _ in range(5)]
        plain = asyncio.create_task(read(False))  # fresh token, no refresh needed at all
        return {
            "first": await first,
            "plain": await plain,
            **{f"late{i}": await t for i, t in enumerate(late)},
        }

    tokens = asyncio.run(scenario())
    assert provider.stats()["refresh_calls"] == 2
    late = {tokens[f"late{i}"] for i in range(5)}
    assert len(late) == 1  # the five late forced reads shared one refresh...
    assert tokens["first"] not in late  # ...sent after they arrived, so not the first one
    assert tokens["plain"] == family["access_token"]  # a fresh token needs no refresh
    _, stored = _row(runtime, pk)
    assert stored["access_token"] in late  # and they got the row's current token


def test_forced_reads_arriving_before_the_send_share_it(
    setup: tuple[Runtime, MockProvider, RefreshService],
) -> None:
    """Forced reads arriving together, before any request is sent, cost one provider call."""
    runtime, provider, service = setup
    pk, family = add_oauth2_connection(runtime, provider)

    async def scenario() -> list[str]:
        conn, creds = _row(runtime, pk)
        results = await asyncio.gather(
            *(service.arefresh_for_read(conn, creds, force=True) for _ in range(20))
        )
        return [str(served["access_token"]) for _, served in results]

    tokens = asyncio.run(scenario())
    assert provider.stats()["refresh_calls"] == 1
    assert len(set(tokens)) == 1 and family["access_token"] not in tokens


def test_forced_read_is_satisfied_by_another_process_refresh_sent_after_it_arrived(
    tmp_path: Path,
) -> None:
    """Two services (two processes) share one lock table: a forced read waiting on the lock while
    the other sends a refresh is served by that refresh when it was sent after the read arrived,
    and refreshes again when it was sent before."""
    settings = make_settings(tmp_path)
    first, second = make_runtime(settings), make_runtime(settings)
    try:
        a, b = (rt.require_refresh_service() for rt in (first, second))
        b.locks = a.locks
        with MockProvider(MockProviderConfig(latency_seconds=0.5)) as provider:
            pk, _ = add_oauth2_connection(first, provider)

            async def arrived_after_the_send() -> tuple[str, str]:
                # B arrives while A's request is already at the provider, and waits on the lock.
                conn, creds = _row(first, pk)
                a_task = asyncio.create_task(a.arefresh_for_read(conn, creds, force=True))
                await _until_sent(provider, 1)
                b_late = asyncio.create_task(b.arefresh_for_read(conn, creds, force=True))
                _, a_served = await a_task
                _, b_served = await b_late
                return str(a_served["access_token"]), str(b_served["access_token"])

            async def arrived_before_the_send() -> tuple[str, str]:
                # B takes the lock first; A arrives before B's request goes out and waits.
                conn, creds = _row(first, pk)
                b_early = asyncio.create_task(b.arefresh_for_read(conn, creds, force=True))
                await asyncio.sleep(0)  # B has arrived and taken the lock
                _, a_served = await a.arefresh_for_read(conn, creds, force=True)
                _, b_served = await b_early
                return str(a_served["access_token"]), str(b_served["access_token"])

            a_token, b_token = asyncio.run(arrived_after_the_send())
            # B arrived after A's request was sent: it needed a refresh of its own.
            assert provider.stats()["refresh_calls"] == 2 and a_token != b_token
            provider.reset_stats()
            a_token, b_token = asyncio.run(arrived_before_the_send())
            # B's request was sent after A arrived: A is served by it, without a call.
            assert provider.stats()["refresh_calls"] == 1 and a_token == b_token
    finally:
        first.close()
        second.close()
