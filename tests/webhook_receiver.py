"""A real HTTP webhook receiver for tests: records every request, answers scripted statuses."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request the receiver got: when, the raw body and the headers (lower-case names)."""

    at: float
    path: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        """The body decoded."""
        return json.loads(self.body)

    @property
    def event_id(self) -> str | None:
        """The ``X-Freshtoken-Event-Id`` header."""
        return self.headers.get("x-freshtoken-event-id")


class WebhookReceiver:
    """Listens on 127.0.0.1 (a free port); ``script`` holds the statuses of the next answers.

    Answers 200 once the script is exhausted. ``redirect_to`` makes 3xx answers point somewhere.
    """

    def __init__(self, script: list[int] | None = None, redirect_to: str | None = None) -> None:
        self.requests: list[Received] = []
        self.script: deque[int] = deque(script or [])
        self.redirect_to = redirect_to
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            time.time(),
                            self.path,
                            body,
                            {k.lower(): v for k, v in self.headers.items()},
                        )
                    )
                    status = receiver.script.popleft() if receiver.script else 200
                self.send_response(status)
                if 300 <= status < 400 and receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The receiver's base URL."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, path: str | None = None) -> list[Received]:
        """A snapshot of the requests so far (optionally only those to ``path``)."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]
