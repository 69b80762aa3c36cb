"""The embedded mode (`freshtoken dev`: SQLite, no Redis) serves reads through the async path."""

from __future__ import annotations

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
from tests.support import (
    ENCRYPTION_KEY,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
)

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.runtime import Runtime

READERS = 40
AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[Runtime, MockProvider, str]]:
    """A migrated SQLite file, the mock provider and a `freshtoken dev` process on them."""
    settings = make_settings(tmp_path)
    runtime = make_runtime(settings)
    provider = MockProvider(MockProviderConfig(latency_seconds=0.3)).start()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    env.update(
        FRESHTOKEN_DATABASE_URL=settings.resolved_database_url,
        FRESHTOKEN_DATA_DIR=str(tmp_path),
        FRESHTOKEN_SECRET_KEY=SECRET_KEY,
        FRESHTOKEN_ENCRYPTION_KEY=ENCRYPTION_KEY,
        FRESHTOKEN_LOG_FORMAT="json",
    )
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshtoken.cli", "dev", "--port", str(port)],
        env=env,
        stdout=log,  # the JSON logs (scanned by the session's leak check)
        # stderr carries only the start-up banner, which shows the development secret key on
        # purpose (it is the developer's own terminal there).
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "freshtoken dev did not become healthy"
            time.sleep(0.2)
        yield runtime, provider, base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        provider.stop()
        runtime.close()


def _burst(base: str, connection_id: str, **params: str) -> list[tuple[int, dict[str, Any]]]:
    barrier = threading.Barrier(READERS)
    results: list[tuple[int, dict[str, Any]]] = []
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:

        def read() -> None:
            barrier.wait()
            response = client.get(
                f"/connections/{connection_id}", params={"provider_config_key": "mock", **params}
            )
            results.append((response.status_code, response.json()))

        threads = [threading.Thread(target=read) for _ in range(READERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    return results


def test_embedded_mode_coalesces_reads_and_forced_reads(
    dev: tuple[Runtime, MockProvider, str],
) -> None:
    """On SQLite without Redis, 40 concurrent reads of an expired token cost one provider call,
    and 40 concurrent forced reads at most two more, every caller getting the latest token."""
    runtime, provider, base = dev
    _, family = add_oauth2_connection(runtime, provider, connection_id="emb", expires_in=-30)
    results = _burst(base, "emb")
    assert [status for status, _ in results] == [200] * READERS
    tokens = {body["credentials"]["access_token"] for _, body in results}
    assert len(tokens) == 1 and family["access_token"] not in tokens
    assert provider.stats()["refresh_calls"] == 1  # the embedded scan and the reads share it

    forced = _burst(base, "emb", force_refresh="true")
    assert [status for status, _ in forced] == [200] * READERS
    stats = provider.stats()
    assert 2 <= stats["refresh_calls"] <= 3, stats
    assert stats["invalid_grant"] == 0
    forced_tokens = {body["credentials"]["access_token"] for _, body in forced}
    assert not forced_tokens & tokens  # each forced read got a refresh sent after it arrived
    with runtime.store() as store:
        conn = store.get_connection("mock", "emb")
        assert conn is not None
        latest = store.credentials(conn)["access_token"]
    assert latest in forced_tokens
    assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
