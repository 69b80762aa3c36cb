"""A hostile token endpoint: a real HTTP server on 127.0.0.1 that misbehaves on request.

Behaviours (``HostileProvider.behave``): a plain token (``ok``), an error whose text the test
chooses (control characters, ANSI escapes, 200 KB, or an echo of the refresh token and client
secret it was sent), a huge body (with or without Content-Length), a body trickled one byte at a
time, and a redirect to another URL. Every request is recorded (path and form), so a test can
prove that a secret never reached it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Behaviour:
    """What the next answers look like."""

    kind: str = "ok"  # ok | error | echo | huge | trickle | redirect
    status: int = 400
    error: str = "invalid_grant"
    size: int = 0  # huge: body bytes
    content_length: bool = True  # huge: announce the size
    delay: float = 0.05  # trickle: seconds per byte
    location: str = ""  # redirect target


@dataclass
class Received:
    """One request as the hostile server saw it."""

    path: str
    form: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


class HostileProvider:
    """Start with ``with HostileProvider() as hp``; ``hp.url`` is its token endpoint."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode(errors="replace")
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                with provider._lock:
                    provider.received.append(Received(self.path, form, dict(self.headers)))
                provider._answer(self, form)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The token endpoint's URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/token"

    def behave(self, **changes: Any) -> None:
        """Replace the behaviour for the following requests."""
        self.behaviour = Behaviour(**changes)

    def __enter__(self) -> HostileProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, h: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        b = self.behaviour
        if b.kind == "ok":
            body = json.dumps(
                {"access_token": "hostile-at-0001", "expires_in": 3600, "token_type": "bearer"}
            ).encode()
            self._send(h, 200, body)
        elif b.kind == "error":
            self._send(h, b.status, json.dumps({"error": b.error}).encode())
        elif b.kind == "echo":
            echoed = f"{b.error} {form.get('refresh_token', '')} {form.get('client_secret', '')}"
            self._send(h, b.status, json.dumps({"error": echoed}).encode())
        elif b.kind == "huge":
            self._huge(h, b)
        elif b.kind == "trickle":
            self._trickle(h, b)
        elif b.kind == "redirect":
            h.send_response(307)
            h.send_header("Location", b.location)
            h.send_header("Content-Length", "0")
            h.end_headers()
        else:  # pragma: no cover - a typo in a test
            raise ValueError(b.kind)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def _huge(h: BaseHTTPRequestHandler, b: Behaviour) -> None:
        # A valid JSON token answer padded to b.size bytes, written in 64 KiB pieces.
        head = b'{"access_token": "hostile-at-huge", "expires_in": 3600, "pad": "'
        tail = b'"}'
        pad = max(0, b.size - len(head) - len(tail))
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if b.content_length:
            h.send_header("Content-Length", str(len(head) + pad + len(tail)))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        try:
            h.wfile.write(head)
            chunk = b"x" * 65536
            left = pad
            while left > 0:
                h.wfile.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            h.wfile.write(tail)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client stopped reading: exactly what a capped read does
        h.close_connection = True

    @staticmethod
    def _trickle(h: BaseHTTPRequestHandler, b: Behaviour) -> None:
        body = json.dumps({"access_token": "hostile-at-slow", "expires_in": 3600}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            for byte in body:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(b.delay)
        except (BrokenPipeError, ConnectionResetError):
            return


@contextmanager
def hostile_provider() -> Iterator[HostileProvider]:
    """A running :class:`HostileProvider` (context manager form, for non-fixture use)."""
    with HostileProvider() as provider:
        yield provider
