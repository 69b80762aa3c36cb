"""The concurrency storm and the forced refresh, through real `freshtoken api` processes.

Real PostgreSQL and Redis, two API processes, and the HTTP mock provider with refresh-token
rotation and reuse detection: a second refresh with a spent token would be answered with
``invalid_grant`` and would revoke the whole family, so one wasted call fails the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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


def test_storm_of_readers_spends_the_refresh_token_once(stack: dict[str, object]) -> None:
    """200 concurrent reads of one expired connection on 2 API processes: one provider call,
    every reader gets the new token, and no invalid_grant."""
    provider = stack["provider"]
    assert isinstance(provider, MockProvider)
    ports = stack["ports"]
    assert isinstance(ports, list)
    pk, family = add_oauth2_connection(stack["runtime"], provider, expires_in=-30)  # type: ignore[arg-type]
    _ = pk
    barrier = threading.Barrier(READERS)
    statuses: list[int] = []
    tokens: list[str] = []
    lock = threading.Lock()
    clients = [
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
            timeout=60,
            limits=httpx.Limits(max_connections=READERS),
        )
        for port in ports
    ]

    def reader(i: int) -> None:
        client = clients[i % 2]
        barrier.wait()
        response = client.get(
            f"/connections/{_connection_id(stack, pk)}", params={"provider_config_key": "mock"}
        )
        with lock:
            statuses.append(response.status_code)
            if response.status_code == 200:
                tokens.append(response.json()["credentials"]["access_token"])

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for client in clients:
        client.close()
    stats = provider.stats()
    assert statuses == [200] * READERS
    assert stats["refresh_calls"] == 1, stats
    assert stats["invalid_grant"] == 0
    assert len(set(tokens)) == 1
    (token,) = set(tokens)
    assert token != family["access_token"]
    assert provider.is_access_token_valid(token)


def _connection_id(stack: dict[str, object], pk: int) -> str:
    runtime = stack["runtime"]
    with runtime.store() as store:  # type: ignore[attr-defined]
        conn = store.get_connection_by_pk(pk)
        return str(conn.connection_id)
