"""The provider call's hard deadline and body cap, against a real token endpoint that trickles."""

from __future__ import annotations

import asyncio
import itertools
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from tests.support import make_runtime, make_settings

from freshtoken.refresh.http import ProviderCallError, ProviderHttp, ProviderRequest
from freshtoken.refresh.locks import LocalLocks
from freshtoken.refresh.service import RefreshService
from freshtoken.settings import Settings
from freshtoken.store.credentials import iso


class TricklingTokenEndpoint:
    """A raw-socket HTTP server on 127.0.0.1 that answers every request one byte at a time.

    It records each request's presented refresh token and when it started and ended: a refresh
    token "in flight twice" is two overlapping requests carrying it.
    """

    def __init__(self, interval: float = 0.2, body_size: int = 200) -> None:
        self.interval = interval
        self.body_size = body_size
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        # (started, ended, the client hung up) per request, monotonic seconds
        self.requests: list[tuple[float, float, bool]] = []
        self.tokens: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        """The token URL."""
        return f"http://127.0.0.1:{self.port}/oauth/token"

    def __enter__(self) -> TricklingTokenEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        started = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(4096)
        token = next(
            (
                p.split("=", 1)[1]
                for p in body.decode().split("&")
                if p.startswith("refresh_token=")
            ),
            "",
        )
        hung_up = False
        try:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {self.body_size}\r\n\r\n".encode()
            )
            for _ in range(self.body_size):
                # Wait one interval, noticing at once when the client hangs up (EOF).
                readable, _, _ = select.select([conn], [], [], self.interval)
                if readable and conn.recv(1) == b"":
                    hung_up = True
                    break
                if self._stop.is_set():
                    break
                conn.sendall(b" ")
        except OSError:
            hung_up = True
        finally:
            with self._lock:
                self.requests.append((started, time.monotonic(), hung_up))
                self.tokens.append(token)
            conn.close()


@pytest.fixture
def endpoint() -> Iterator[TricklingTokenEndpoint]:
    """A token endpoint sending one byte every 0.2 s (a per-read timeout never fires)."""
    with TricklingTokenEndpoint(interval=0.2) as server:
        yield server


def _add_connection(runtime: Any, token_url: str, refresh_token: str) -> int:
    now = runtime.clock.now()
    with runtime.store() as store:
        integration = store.get_integration("slow") or store.create_integration(
            unique_key="slow", provider="oauth2", client_id="cid", client_secret="csecret"
        )
        conn, _ = store.upsert_connection(
            integration,
            connection_id=f"c-{refresh_token}",
            credentials={
                "type": "OAUTH2",
                "access_token": "at-old",
                "refresh_token": refresh_token,
                "expires_at": iso(now),
                "raw": {},
            },
            connection_config={"token_url": token_url},
        )
        return conn.id


def test_trickling_endpoint_is_cut_at_the_deadline_inside_the_lock_ttl(
    tmp_path: Path, endpoint: TricklingTokenEndpoint
) -> None:
    """A call that trickles forever ends at the deadline; racing refreshers never overlap on a RT.

    Three services (three "processes") share one lock table and force-refresh the same connection
    at once. Each call is cut at the 1 s deadline, well inside the 3 s lock TTL, so the next holder
    only sends the refresh token after the previous request was abandoned: never two in flight.
    """
    settings = make_settings(
        tmp_path,
        http_connect_timeout=0.5,
        http_read_timeout=0.5,
        provider_deadline_seconds=1.0,
        lock_ttl_seconds=3.0,
        lock_wait_seconds=8.0,
    )
    runtimes = [make_runtime(settings) for _ in range(3)]
    locks = LocalLocks()
    try:
        services = []
        for rt in runtimes:
            service = rt.require_refresh_service()
            service.locks = locks
            services.append(service)
        pk = _add_connection(runtimes[0], endpoint.url, "rt-trickle")
        results: list[Any] = []
        timings: list[float] = []

        def refresh(service: RefreshService) -> None:
            started = time.monotonic()
            results.append(service.refresh(pk, trigger="manual", force=True))
            timings.append(time.monotonic() - started)

        threads = [threading.Thread(target=refresh, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [r.error.error_code for r in results] == ["timeout"] * 3
        requests = sorted(endpoint.requests)
        assert endpoint.tokens == ["rt-trickle"] * 3
        # Each request was abandoned by the client at about the 1 s deadline: far from the 40 s
        # the trickle would take, and well inside the 3 s lock TTL...
        assert all(hung_up and end - start < 1.5 for start, end, hung_up in requests), requests
        # ...so the next holder sent the same refresh token only after the previous request
        # ended: never two requests carrying it at once.
        for (_, previous_end, _), (next_start, _, _) in itertools.pairwise(requests):
            assert next_start >= previous_end - 0.05, requests
        assert max(timings) < 3 * 1.5 + 1.0
    finally:
        for rt in runtimes:
            rt.close()


def test_deadline_never_outlives_the_lock() -> None:
    """The validator refuses a provider deadline that does not end a margin before the lock TTL."""
    with pytest.raises(ValidationError, match="PROVIDER_DEADLINE"):
        Settings(
            lock_ttl_seconds=10.0,
            http_connect_timeout=1.0,
            http_read_timeout=2.0,
            provider_deadline_seconds=9.0,
        )
    with pytest.raises(ValidationError):
        Settings(lock_ttl_seconds=21.0, http_connect_timeout=5.0, http_read_timeout=15.0)
    ok = Settings(
        lock_ttl_seconds=10.0,
        http_connect_timeout=1.0,
        http_read_timeout=2.0,
        provider_deadline_seconds=8.0,
    )
    assert ok.provider_deadline + ok.lock_safety_margin <= ok.lock_ttl_seconds


def test_body_over_the_cap_is_refused() -> None:
    """A body larger than provider_max_response_bytes fails response_too_large, declared or not."""
    settings = Settings(provider_max_response_bytes=1024)

    def declared(_req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 1025)

    def streamed(_req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_chunks())

    async def _chunks() -> Any:
        for _ in range(20):
            yield b"y" * 100  # 2000 bytes in all, past the 1024-byte cap

    request = ProviderRequest(url="https://provider.test/token", headers={}, form={"a": "b"})
    for handler in (declared, streamed):
        http = ProviderHttp(settings, transport=httpx.MockTransport(handler))
        with pytest.raises(ProviderCallError, match="response_too_large"):
            asyncio.run(http.send(request))
    small = ProviderHttp(
        settings, transport=httpx.MockTransport(lambda _r: httpx.Response(200, content=b"{}"))
    )
    assert asyncio.run(small.send(request)).content == b"{}"
