"""The concurrency storm and the forced refresh, through real `freshtoken api` processes.

Real PostgreSQL and Redis, two API processes, and the HTTP mock provider with refresh-token
rotation and reuse detection: a second refresh with a spent token would be answered with
``invalid_grant`` and would revoke the whole family, so one wasted call fails the test.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from tests.support import (
    ENCRYPTION_KEY,
    REDIS_URL,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
    pg_schema_url,
    redis_client,
)

pytestmark = pytest.mark.integration

READERS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_api(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "freshtoken.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"api on port {port} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"api on port {port} did not become healthy")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, object]]:
    """PostgreSQL schema + Redis + mock provider + two `freshtoken api` processes."""
    db_url = pg_schema_url()
    redis = redis_client()
    settings = make_settings(tmp_path, database_url=db_url, redis_url=REDIS_URL)
    runtime = make_runtime(settings)
    provider = MockProvider(
        MockProviderConfig(latency_seconds=0.5, rotate_refresh_tokens=True, reuse_detection=True)
    ).start()
    env = {
        **os.environ,
        "FRESHTOKEN_DATABASE_URL": db_url,
        "FRESHTOKEN_REDIS_URL": REDIS_URL,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_LOG_FORMAT": "json",
        "FRESHTOKEN_DB_POOL_SIZE": "20",
    }
    ports = [_free_port(), _free_port()]
    procs = [_start_api(env, p, tmp_path / f"api-{i}.log") for i, p in enumerate(ports)]
    try:
        deadline = time.monotonic() + 60
        for port, proc in zip(ports, procs, strict=True):
            _wait_healthy(port, proc, deadline)
        yield {"runtime": runtime, "provider": provider, "ports": ports, "tmp": tmp_path}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        provider.stop()
        runtime.close()
        redis.flushdb()


def _burst(
    stack: dict[str, object], connection_id: str, count: int, **params: str
) -> list[tuple[int, dict[str, Any], float]]:
    """``count`` concurrent reads spread over both API processes, released by one barrier.

    Returns (status, body, wall-clock time the response arrived) per read.
    """
    ports = stack["ports"]
    assert isinstance(ports, list)
    barrier = threading.Barrier(count)
    results: list[tuple[int, dict[str, Any], float]] = []
    lock = threading.Lock()
    clients = [
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
            timeout=60,
            limits=httpx.Limits(max_connections=count),
        )
        for port in ports
    ]

    def reader(i: int) -> None:
        client = clients[i % len(clients)]
        barrier.wait()
        response = client.get(
            f"/connections/{connection_id}", params={"provider_config_key": "mock", **params}
        )
        arrived = time.time()
        with lock:
            results.append((response.status_code, response.json(), arrived))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for client in clients:
        client.close()
    return results


def test_storm_of_readers_spends_the_refresh_token_once(stack: dict[str, object]) -> None:
    """200 concurrent reads of one expired connection on 2 API processes: one provider call,
    every reader gets the new token, and no invalid_grant."""
    provider = stack["provider"]
    assert isinstance(provider, MockProvider)
    pk, family = add_oauth2_connection(stack["runtime"], provider, expires_in=-30)  # type: ignore[arg-type]
    results = _burst(stack, _connection_id(stack, pk), READERS)
    stats = provider.stats()
    assert [status for status, _, _ in results] == [200] * READERS
    assert stats["refresh_calls"] == 1, stats
    assert stats["invalid_grant"] == 0
    tokens = {body["credentials"]["access_token"] for _, body, _ in results}
    assert len(tokens) == 1
    (token,) = tokens
    assert token != family["access_token"]
    assert provider.is_access_token_valid(token)


def test_forced_storm_shares_refreshes_and_hands_out_only_current_tokens(
    stack: dict[str, object],
) -> None:
    """200 concurrent force_refresh reads of a fresh connection on 2 API processes.

    Forced reads share refreshes sent after they arrived: at most 2 provider calls. Every caller
    gets the token that was current when its response was sent: a newer token cannot be stored
    before its request was sent plus the provider's latency, and every response carrying an older
    token arrived before that instant. (A token's request time is its expiry less its lifetime.)
    """
    provider = stack["provider"]
    assert isinstance(provider, MockProvider)
    latency = 1.0
    provider.configure(latency_seconds=latency)
    pk, family = add_oauth2_connection(stack["runtime"], provider)  # type: ignore[arg-type]
    results = _burst(stack, _connection_id(stack, pk), READERS, force_refresh="true")
    stats = provider.stats()
    assert [status for status, _, _ in results] == [200] * READERS
    assert 1 <= stats["refresh_calls"] <= 2, stats
    assert stats["invalid_grant"] == 0
    lifetime = provider.config.token_lifetime_seconds
    sent: dict[str, float] = {}
    for _, body, _ in results:
        credentials = body["credentials"]
        expires_at = dt.datetime.fromisoformat(credentials["expires_at"]).timestamp()
        sent[credentials["access_token"]] = expires_at - lifetime
    assert family["access_token"] not in sent  # every forced read got a refresh it asked for
    assert len(sent) <= stats["refresh_calls"]
    superseded = [
        token
        for _, body, arrived in results
        for token in [body["credentials"]["access_token"]]
        if any(other > sent[token] and arrived >= other + latency for other in sent.values())
    ]
    assert superseded == [], f"{len(superseded)} callers got a superseded token"


def test_health_and_other_reads_are_not_starved_by_slow_refreshes(
    stack: dict[str, object],
) -> None:
    """45 refreshes waiting on a 3 s token endpoint hold no thread: /health and a read of another
    connection on the same API process answer quickly meanwhile (loosely: < 1 s)."""
    provider = stack["provider"]
    runtime = stack["runtime"]
    assert isinstance(provider, MockProvider)
    ports = stack["ports"]
    assert isinstance(ports, list)
    provider.configure(latency_seconds=3.0)
    slow = [
        _connection_id(stack, add_oauth2_connection(runtime, provider, expires_in=-30)[0])  # type: ignore[arg-type]
        for _ in range(45)
    ]
    fresh_pk, _ = add_oauth2_connection(runtime, provider)  # type: ignore[arg-type]
    fresh = _connection_id(stack, fresh_pk)
    base = f"http://127.0.0.1:{ports[0]}"
    auth = {"Authorization": f"Bearer {SECRET_KEY}"}
    statuses: list[int] = []

    def slow_read(connection_id: str) -> None:
        response = httpx.get(
            f"{base}/connections/{connection_id}",
            params={"provider_config_key": "mock"},
            headers=auth,
            timeout=60,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=slow_read, args=(c,)) for c in slow]
    for t in threads:
        t.start()
    # Let the refreshes reach the provider (in flight until its 3 s latency is over).
    deadline = time.monotonic() + 10
    while provider.stats()["in_flight"] < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.stats()["in_flight"] >= 40, provider.stats()
    timings: list[float] = []
    with httpx.Client(base_url=base, headers=auth, timeout=10) as client:
        for _ in range(5):
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            timings.append(time.monotonic() - started)
            started = time.monotonic()
            other = client.get(f"/connections/{fresh}", params={"provider_config_key": "mock"})
            assert other.status_code == 200
            timings.append(time.monotonic() - started)
    in_flight_after = provider.stats()["in_flight"]
    for t in threads:
        t.join(60)
    assert statuses == [200] * 45
    assert in_flight_after > 0  # the measurements were taken while the refreshes waited
    assert max(timings) < 1.0, timings


def _connection_id(stack: dict[str, object], pk: int) -> str:
    runtime = stack["runtime"]
    with runtime.store() as store:  # type: ignore[attr-defined]
        conn = store.get_connection_by_pk(pk)
        return str(conn.connection_id)
