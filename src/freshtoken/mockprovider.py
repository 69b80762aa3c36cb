"""A real HTTP mock OAuth2 provider that behaves like the hard providers.

The server is stdlib only (``http.server.ThreadingHTTPServer``), starts in-process in a daemon
thread in milliseconds, and also runs in the foreground via :func:`serve` (used by the
``freshtoken mock-provider`` CLI command) or ``python -m freshtoken.mockprovider``.

Behaviour, on ``POST /oauth/token``:

* ``grant_type=refresh_token``: with ``rotate_refresh_tokens`` every refresh issues a new refresh
  token and spends the presented one.  Each token family has exactly one live refresh token.
  Presenting a spent token outside ``grace_seconds`` is a replay: ``400 invalid_grant`` and, with
  ``reuse_detection``, the whole family (its live refresh token and every access token it issued)
  is revoked, as Auth0, Okta, Salesforce and Atlassian do.  Within the grace window a spent token
  is accepted and a fresh pair is issued in the same family; the family's previous live refresh
  token becomes spent at that moment (so a client must still keep the newest token).
* ``grant_type=client_credentials``: issues an access token only.
* Client authentication: HTTP Basic (RFC 6749 section 2.3.1, id and secret form-urlencoded before
  base64) or ``client_id``/``client_secret`` in the body, restricted by ``client_auth``.
* Failures can be queued with :meth:`MockProvider.inject` (5xx, 429, hangs, Slack- and
  HubSpot-style errors, non-JSON bodies, ...).

``latency_seconds`` is applied after the request has been processed and before the response is
written: a client whose timeout is shorter than the latency loses a response for a refresh that
*did* happen (the refresh token was rotated), which is exactly the failure that grace windows
exist for.

Nothing here writes tokens or secrets to stdout/stderr: request logging is switched off, and the
only line :func:`serve` prints is the listening address.  Tokens are random and prefixed
``mock-at-`` / ``mock-rt-`` so they are recognisably fake.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import hmac
import json
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import parse_qs, unquote_plus, urlsplit

from freshtoken.mock_authmodes import MockAuthModes

__all__ = [
    "INJECTABLE_KINDS",
    "TOKEN_PATH",
    "MockProvider",
    "MockProviderConfig",
    "main",
    "serve",
]

TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 - a URL path, not a secret
INJECTABLE_KINDS: Final = frozenset(
    {
        "500",
        "503",
        "429",
        "timeout",
        "invalid_grant",
        "invalid_client",
        "slack_ok_false",
        "hubspot_bad_refresh",
        "non_json",
        "custom",
    }
)
CLIENT_AUTH_MODES: Final = frozenset({"any", "basic", "body"})

#: How long an injected "timeout" hangs before closing the connection without answering.
HANG_SECONDS: Final = 30.0
#: Largest request body the server reads; bigger requests get 413 and the connection is closed.
MAX_BODY_BYTES: Final = 1 << 20
#: Expired access tokens are pruned from memory every this many issued tokens.
_PRUNE_EVERY: Final = 10_000
_DEFAULT_SCOPE: Final = "mock.read mock.write"


@dataclass
class MockProviderConfig:
    """Behaviour of the mock provider; every field can be changed at runtime via configure()."""

    token_lifetime_seconds: float = 3600
    latency_seconds: float = 0.0
    rotate_refresh_tokens: bool = True
    reuse_detection: bool = True
    grace_seconds: float = 0.0
    client_id: str = "mock-client"
    client_secret: str = "mock-secret"  # noqa: S105 - a fake credential of a fake provider
    client_auth: str = "any"
    omit_expires_in: bool = False
    expires_in_as_string: bool = False
    omit_refresh_token_in_response: bool = False

    def validate(self) -> None:
        """Raise ValueError when a field has the wrong type or an out-of-range value."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be a boolean")
            elif f.type in ("float", float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{f.name} must be a number")
                if value < 0:
                    raise ValueError(f"{f.name} must not be negative")
            elif f.type in ("str", str) and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string")
        if self.client_auth not in CLIENT_AUTH_MODES:
            raise ValueError(f"client_auth must be one of {sorted(CLIENT_AUTH_MODES)}")


@dataclass
class _Family:
    """A chain of tokens descending from one grant (one seed)."""

    family_id: str
    subject: str
    scope: str
    current_refresh_token: str
    revoked: bool = False


@dataclass
class _RefreshToken:
    family_id: str
    spent_at: float | None = None


@dataclass
class _AccessToken:
    family_id: str | None  # None for client_credentials tokens
    subject: str
    expires_at: float


@dataclass
class _Injection:
    kind: str
    retry_after: int | None
    body: dict[str, Any] | None


@dataclass
class _Outcome:
    """What the token endpoint answers (or, with hang=True, that it hangs and hangs up)."""

    status: int = 200
    payload: Any = None
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    hang: bool = False


def _oauth_error(status: int, error: str, description: str) -> _Outcome:
    return _Outcome(status, {"error": error, "error_description": description})


def _zero_stats() -> dict[str, Any]:
    return {
        "token_calls": 0,
        "refresh_calls": 0,
        "client_credentials_calls": 0,
        "successes": 0,
        "invalid_grant": 0,
        "invalid_client": 0,
        "reuse_detected": 0,
        "grace_accepted": 0,
        "families_revoked": 0,
        "injected_errors": 0,
        "max_concurrent": 0,
        "client_auth_used": {"basic": 0, "body": 0},
        "calls_by_refresh_token": {},
    }


class MockProvider:
    """An in-process HTTP OAuth2 provider with rotation, reuse detection and fault injection.

    Use as ``with MockProvider(config) as provider: ...`` or ``provider.start()`` /
    ``provider.stop()``.  All state lives in memory behind one lock; the server keeps its tokens
    across stop()/start().
    """

    def __init__(
        self, config: MockProviderConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else MockProviderConfig()
        self.config.validate()
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._families: dict[str, _Family] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._injections: deque[_Injection] = deque()
        self._stats = _zero_stats()
        self._in_flight = 0
        self._family_seq = 0
        self._issued_since_prune = 0
        # GitHub-App-like and TWO_STEP-like endpoints (issue #12), in their own module.
        self.authmodes = MockAuthModes()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MockProvider:
        """Bind the socket and serve in a daemon thread; return self."""
        if self._server is not None:
            raise RuntimeError("mock provider already started")
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.provider = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"mock-provider-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: wake hanging handlers, close every open connection and the socket."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> MockProvider:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (the port is known once started)."""
        if self._port == 0:
            raise RuntimeError("mock provider not started: the port is not bound yet")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def token_url(self) -> str:
        """The token endpoint URL: ``url + "/oauth/token"``."""
        return self.url + TOKEN_PATH

    # ------------------------------------------------------------------ control

    def configure(self, **changes: Any) -> None:
        """Change config fields atomically (unknown names or bad values raise, changing nothing)."""
        names = {f.name for f in dataclasses.fields(MockProviderConfig)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        with self._lock:
            candidate = dataclasses.replace(self.config, **changes)
            candidate.validate()
            for name, value in changes.items():
                setattr(self.config, name, value)

    def seed(
        self,
        refresh_token: str | None = None,
        access_token: str | None = None,
        lifetime_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Register a new token family and return its access and refresh token.

        Returns ``{"access_token", "refresh_token", "expires_in", "expires_at"}`` where
        ``expires_at`` is epoch seconds.  Tokens not given are generated.
        """
        if lifetime_seconds is not None and lifetime_seconds < 0:
            raise ValueError("lifetime_seconds must not be negative")
        rt = refresh_token if refresh_token is not None else _new_token("mock-rt-")
        at = access_token if access_token is not None else _new_token("mock-at-")
        if not isinstance(rt, str) or not isinstance(at, str) or not rt or not at:
            raise ValueError("tokens must be non-empty strings")
        with self._lock:
            lifetime = (
                self.config.token_lifetime_seconds if lifetime_seconds is None else lifetime_seconds
            )
            self._family_seq += 1
            family_id = f"fam-{self._family_seq}"
            family = _Family(family_id, f"mock-user-{self._family_seq}", _DEFAULT_SCOPE, rt)
            self._families[family_id] = family
            self._refresh_tokens[rt] = _RefreshToken(family_id)
            expires_at = time.time() + lifetime
            self._access_tokens[at] = _AccessToken(family_id, family.subject, expires_at)
        return {
            "access_token": at,
            "refresh_token": rt,
            "expires_in": int(lifetime),
            "expires_at": expires_at,
        }

    def inject(
        self,
        kind: str,
        count: int = 1,
        retry_after: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Make the next ``count`` token-endpoint calls fail as ``kind`` (queued in order).

        Kinds: "500", "503", "429" (Retry-After, default 2), "timeout" (hang, then close without
        answering), "invalid_grant", "invalid_client", "slack_ok_false", "hubspot_bad_refresh",
        "non_json", "custom" (status 400 with ``body``).  ``body`` also replaces the JSON body of
        the other JSON kinds.  An injected failure does not touch any token.
        """
        if kind not in INJECTABLE_KINDS:
            raise ValueError(f"unknown injection kind {kind!r}; one of {sorted(INJECTABLE_KINDS)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0
        ):
            raise ValueError("retry_after must be a non-negative integer")
        if body is not None and not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        with self._lock:
            for _ in range(count):
                self._injections.append(_Injection(kind, retry_after, body))

    def stats(self) -> dict[str, Any]:
        """Return a snapshot of the counters (see the module docs for their meaning)."""
        with self._lock:
            snapshot = dict(self._stats)
            snapshot["client_auth_used"] = dict(self._stats["client_auth_used"])
            snapshot["calls_by_refresh_token"] = dict(self._stats["calls_by_refresh_token"])
            snapshot["in_flight"] = self._in_flight
            snapshot["pending_injections"] = len(self._injections)
        return snapshot

    def reset_stats(self) -> None:
        """Zero every counter (tokens, config and queued injections are kept)."""
        with self._lock:
            self._stats = _zero_stats()
            self._stats["max_concurrent"] = self._in_flight

    def is_access_token_valid(self, access_token: str) -> bool:
        """Return True if the access token is known, not revoked and not expired."""
        with self._lock:
            return self._valid_access_token(access_token) is not None

    def current_refresh_token(self, family_of: str) -> str | None:
        """Return the live refresh token of the family that ``family_of`` belongs to.

        ``family_of`` may be any refresh token (spent or live) or access token of the family.
        Returns None for unknown tokens, client-credentials tokens and revoked families.
        """
        with self._lock:
            family_id: str | None = None
            if family_of in self._refresh_tokens:
                family_id = self._refresh_tokens[family_of].family_id
            elif family_of in self._access_tokens:
                family_id = self._access_tokens[family_of].family_id
            family = self._families.get(family_id) if family_id is not None else None
            if family is None or family.revoked:
                return None
            return family.current_refresh_token

    # ------------------------------------------------------------------ internals

    def _valid_access_token(self, access_token: str) -> _AccessToken | None:
        record = self._access_tokens.get(access_token)
        if record is None or record.expires_at <= time.time():
            return None
        if record.family_id is not None and self._families[record.family_id].revoked:
            return None
        return record

    def _enter_token_call(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._stats["max_concurrent"] = max(self._stats["max_concurrent"], self._in_flight)

    def _leave_token_call(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _latency(self) -> float:
        with self._lock:
            return float(self.config.latency_seconds)

    def _handle_token(self, params: dict[str, Any], authorization: str | None) -> _Outcome:
        """Decide the token endpoint's answer; all state changes happen here under the lock."""
        grant_type = params.get("grant_type")
        presented = params.get("refresh_token")
        with self._lock:
            cfg = dataclasses.replace(self.config)
            stats = self._stats
            stats["token_calls"] += 1
            if grant_type == "refresh_token":
                stats["refresh_calls"] += 1
                if isinstance(presented, str) and presented:
                    by_rt = stats["calls_by_refresh_token"]
                    by_rt[presented] = by_rt.get(presented, 0) + 1
            elif grant_type == "client_credentials":
                stats["client_credentials_calls"] += 1

            if self._injections:
                stats["injected_errors"] += 1
                return _injected_outcome(self._injections.popleft())

            method = _authenticate_client(cfg, params, authorization)
            if method is None:
                stats["invalid_client"] += 1
                outcome = _oauth_error(401, "invalid_client", "client authentication failed")
                outcome.headers.append(("WWW-Authenticate", 'Basic realm="mock-provider"'))
                return outcome
            stats["client_auth_used"][method] += 1

            scope = params.get("scope")
            if scope is not None and not isinstance(scope, str):
                return _oauth_error(400, "invalid_scope", "scope must be a string")
            if grant_type == "client_credentials":
                return self._issue_client_credentials(cfg, scope)
            if grant_type == "refresh_token":
                if not isinstance(presented, str) or not presented:
                    return _oauth_error(400, "invalid_request", "refresh_token is required")
                return self._refresh(cfg, presented, scope)
            if grant_type is None:
                return _oauth_error(400, "invalid_request", "grant_type is required")
            return _oauth_error(
                400, "unsupported_grant_type", "only refresh_token and client_credentials"
            )

    def _refresh(self, cfg: MockProviderConfig, presented: str, scope: str | None) -> _Outcome:
        """Run the refresh_token grant; the caller holds the lock."""
        stats = self._stats
        now = time.time()
        record = self._refresh_tokens.get(presented)
        if record is None:
            stats["invalid_grant"] += 1
            return _oauth_error(400, "invalid_grant", "unknown refresh token")
        family = self._families[record.family_id]
        if record.spent_at is not None:
            in_grace = cfg.grace_seconds > 0 and now - record.spent_at <= cfg.grace_seconds
            if not in_grace:
                stats["invalid_grant"] += 1
                if cfg.reuse_detection:
                    stats["reuse_detected"] += 1
                    if not family.revoked:
                        family.revoked = True
                        stats["families_revoked"] += 1
                return _oauth_error(400, "invalid_grant", "refresh token already used")
            if not family.revoked:
                stats["grace_accepted"] += 1
        if family.revoked:
            stats["invalid_grant"] += 1
            return _oauth_error(400, "invalid_grant", "refresh token revoked")

        rotate = cfg.rotate_refresh_tokens and not cfg.omit_refresh_token_in_response
        if rotate:
            previous = self._refresh_tokens.get(family.current_refresh_token)
            # (a re-seeded token string may have moved to another family: leave that one alone)
            if previous is not None and previous.family_id == family.family_id:
                previous.spent_at = previous.spent_at if previous.spent_at is not None else now
            new_rt = _new_token("mock-rt-")
            self._refresh_tokens[new_rt] = _RefreshToken(family.family_id)
            family.current_refresh_token = new_rt
        at = self._new_access_token(cfg, family.family_id, family.subject, now)
        stats["successes"] += 1
        payload = self._token_payload(cfg, at, scope or family.scope)
        if cfg.omit_refresh_token_in_response:
            payload.pop("scope", None)
        else:
            payload["refresh_token"] = family.current_refresh_token
        return _Outcome(200, payload)

    def _issue_client_credentials(self, cfg: MockProviderConfig, scope: str | None) -> _Outcome:
        at = self._new_access_token(cfg, None, cfg.client_id, time.time())
        self._stats["successes"] += 1
        return _Outcome(200, self._token_payload(cfg, at, scope or _DEFAULT_SCOPE))

    def _new_access_token(
        self, cfg: MockProviderConfig, family_id: str | None, subject: str, now: float
    ) -> str:
        self._issued_since_prune += 1
        if self._issued_since_prune >= _PRUNE_EVERY:
            self._issued_since_prune = 0
            expired = [t for t, r in self._access_tokens.items() if r.expires_at <= now]
            for token in expired:
                del self._access_tokens[token]
        at = _new_token("mock-at-")
        self._access_tokens[at] = _AccessToken(family_id, subject, now + cfg.token_lifetime_seconds)
        return at

    @staticmethod
    def _token_payload(cfg: MockProviderConfig, at: str, scope: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"access_token": at, "token_type": "Bearer"}
        if not cfg.omit_expires_in:
            expires_in = int(cfg.token_lifetime_seconds)
            payload["expires_in"] = str(expires_in) if cfg.expires_in_as_string else expires_in
        payload["scope"] = scope
        return payload

    def _userinfo(self, authorization: str | None) -> _Outcome:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            record = self._valid_access_token(token.strip()) if scheme.lower() == "bearer" else None
            if record is None:
                outcome = _oauth_error(401, "invalid_token", "access token invalid or expired")
                outcome.headers.append(("WWW-Authenticate", 'Bearer error="invalid_token"'))
                return outcome
            return _Outcome(200, {"sub": record.subject})

    def _public_config(self) -> dict[str, Any]:
        with self._lock:
            data = dataclasses.asdict(self.config)
        data["client_secret"] = "***"  # noqa: S105 - masked on purpose
        return data


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)


def _matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _authenticate_client(
    cfg: MockProviderConfig, params: dict[str, Any], authorization: str | None
) -> str | None:
    """Return "basic" or "body" for the accepted method, None when authentication fails.

    ``basic`` mode looks only at the Authorization header, ``body`` mode only at body
    parameters, ``any`` prefers a Basic header when one is sent.
    """
    basic: tuple[str, str] | None = None
    basic_sent = False
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        basic_sent = True
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        raw_id, sep, raw_secret = decoded.partition(":")
        if sep:
            basic = (unquote_plus(raw_id), unquote_plus(raw_secret))
    body_id, body_secret = params.get("client_id"), params.get("client_secret")
    body: tuple[str, str] | None = None
    if isinstance(body_id, str) and isinstance(body_secret, str):
        body = (body_id, body_secret)

    if cfg.client_auth == "basic" or (cfg.client_auth == "any" and basic_sent):
        chosen, method = basic, "basic"
    else:
        chosen, method = body, "body"
    if chosen is None:
        return None
    ok_id = _matches(chosen[0], cfg.client_id)
    ok_secret = _matches(chosen[1], cfg.client_secret)
    return method if ok_id and ok_secret else None


def _injected_outcome(injection: _Injection) -> _Outcome:
    kind, body = injection.kind, injection.body
    if kind == "timeout":
        return _Outcome(hang=True)
    if kind == "non_json":
        html = "<html><body><h1>502 Bad Gateway</h1><p>upstream unavailable</p></body></html>"
        return _Outcome(200, html, content_type="text/html; charset=utf-8")
    status, payload = {
        "500": (500, {"error": "server_error", "error_description": "injected failure"}),
        "503": (503, {"error": "temporarily_unavailable", "error_description": "injected"}),
        "429": (429, {"error": "rate_limited", "error_description": "too many requests"}),
        "invalid_grant": (
            400,
            {"error": "invalid_grant", "error_description": "refresh token is invalid (injected)"},
        ),
        "invalid_client": (
            401,
            {"error": "invalid_client", "error_description": "client is invalid (injected)"},
        ),
        "slack_ok_false": (200, {"ok": False, "error": "invalid_refresh_token"}),
        "hubspot_bad_refresh": (
            400,
            {
                "status": "BAD_REFRESH_TOKEN",
                "message": "missing or invalid refresh token",
                "correlationId": "00000000-0000-4000-8000-000000000000",
            },
        ),
        "custom": (400, {"error": "custom_error"}),
    }[kind]
    outcome = _Outcome(status, body if body is not None else payload)
    if kind == "429":
        retry_after = 2 if injection.retry_after is None else injection.retry_after
        outcome.headers.append(("Retry-After", str(retry_after)))
    elif kind == "503" and injection.retry_after is not None:
        outcome.headers.append(("Retry-After", str(injection.retry_after)))
    elif kind == "invalid_client":
        outcome.headers.append(("WWW-Authenticate", 'Basic realm="mock-provider"'))
    return outcome


class _Server(ThreadingHTTPServer):
    """Thread-per-connection server that can close its open connections on stop()."""

    daemon_threads = True
    # server_close() must not wait for handler threads (idle keep-alive connections, hangs).
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True
    provider: MockProvider

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        """Shut down every open client connection so idle handler threads exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Quiet: clients hang up on purpose (timeouts); never print request data.
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, OSError):
            return
        sys.stderr.write(f"mock provider: handler error {type(exc).__name__}\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server_version = "freshtoken-mockprovider/1.0"
    sys_version = ""

    @property
    def provider(self) -> MockProvider:
        return cast(_Server, self.server).provider

    def version_string(self) -> str:
        """Return the Server header value (no Python version)."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no request logging at all."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol-level errors with JSON (and close the connection)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._send_outcome(_Outcome(code, {"error": "http_error", "status": code}))

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Dispatch a POST."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Dispatch a PUT."""
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        """Dispatch a PATCH."""
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        """Dispatch a DELETE."""
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            self._send_outcome(_Outcome(exc.status, {"error": "invalid_request"}))
            return
        path = urlsplit(self.path).path
        if path == TOKEN_PATH and method == "POST":
            self._token_endpoint(body)
            return
        reply = self.provider.authmodes.route(method, path, self.headers.get("Authorization"), body)
        if reply is not None:
            self._send_outcome(_Outcome(reply.status, reply.payload))
            return
        try:
            outcome = self._route(method, path, body)
        except Exception as exc:  # a bug here must not kill the connection silently
            outcome = _Outcome(500, {"error": "server_error", "type": type(exc).__name__})
        self._send_outcome(outcome)

    def _route(self, method: str, path: str, body: bytes) -> _Outcome:
        provider = self.provider
        routes: dict[str, str] = {
            TOKEN_PATH: "POST",
            "/userinfo": "GET",
            "/health": "GET",
            "/_mock/stats": "GET",
            "/_mock/reset": "POST",
            "/_mock/config": "GET, POST",
            "/_mock/inject": "POST",
            "/_mock/seed": "POST",
        }
        allowed = routes.get(path)
        if allowed is None:
            return _Outcome(404, {"error": "not_found", "path": path})
        if method not in allowed.split(", "):
            return _Outcome(405, {"error": "method_not_allowed"}, headers=[("Allow", allowed)])
        if path == "/health":
            return _Outcome(200, {"status": "ok"})
        if path == "/userinfo":
            return provider._userinfo(self.headers.get("Authorization"))
        if path == "/_mock/stats":
            return _Outcome(200, provider.stats())
        if path == "/_mock/reset":
            provider.reset_stats()
            return _Outcome(200, {"ok": True})
        if path == "/_mock/config" and method == "GET":
            return _Outcome(200, provider._public_config())
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if path == "/_mock/config":
                provider.configure(**data)
                return _Outcome(200, provider._public_config())
            if path == "/_mock/inject":
                provider.inject(
                    str(data.get("kind")),
                    count=data.get("count", 1),
                    retry_after=data.get("retry_after"),
                    body=data.get("body"),
                )
                return _Outcome(
                    200, {"ok": True, "pending": provider.stats()["pending_injections"]}
                )
            return _Outcome(
                200,
                provider.seed(
                    refresh_token=data.get("refresh_token"),
                    access_token=data.get("access_token"),
                    lifetime_seconds=data.get("lifetime_seconds"),
                ),
            )
        except (ValueError, TypeError) as exc:
            return _Outcome(400, {"error": "invalid_request", "error_description": str(exc)})

    def _token_endpoint(self, body: bytes) -> None:
        provider = self.provider
        provider._enter_token_call()
        try:
            params = _parse_params(self.headers.get("Content-Type", ""), body)
            if params is None:
                outcome = _oauth_error(400, "invalid_request", "malformed request body")
            else:
                try:
                    outcome = provider._handle_token(params, self.headers.get("Authorization"))
                except Exception as exc:  # answer instead of dropping the connection
                    outcome = _Outcome(500, {"error": "server_error", "type": type(exc).__name__})
            if outcome.hang:
                provider._stopping.wait(HANG_SECONDS)
                self.close_connection = True  # hang up without answering
                return
            latency = provider._latency()
            if latency > 0:
                provider._stopping.wait(latency)
            self._send_outcome(outcome)
        finally:
            provider._leave_token_call()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            raise _BodyError(400) from None
        if length < 0:
            raise _BodyError(400)
        if length > MAX_BODY_BYTES:
            raise _BodyError(413)
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400) from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError(413)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)  # CRLF after the chunk

    def _send_outcome(self, outcome: _Outcome) -> None:
        if isinstance(outcome.payload, bytes | str):
            data = outcome.payload.encode() if isinstance(outcome.payload, str) else outcome.payload
        else:
            data = json.dumps(outcome.payload).encode("utf-8")
        self.send_response(outcome.status)
        self.send_header("Content-Type", outcome.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        for name, value in outcome.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class _BodyError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _parse_params(content_type: str, body: bytes) -> dict[str, Any] | None:
    """Parse a form-urlencoded or JSON body into a dict (first value wins); None if malformed."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return data
    # form-urlencoded, also the fallback when the client sends no Content-Type
    try:
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    return {key: values[0] for key, values in parsed.items()}


def serve(config: MockProviderConfig, host: str, port: int) -> None:
    """Run a mock provider in the foreground until SIGINT or SIGTERM.

    Prints exactly one line: ``mock provider listening on http://HOST:PORT (token endpoint
    /oauth/token)``.
    """
    stop = threading.Event()

    def _on_signal(*_args: object) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    provider = MockProvider(config, host=host, port=port).start()
    try:
        sys.stdout.write(
            f"mock provider listening on {provider.url} (token endpoint {TOKEN_PATH})\n"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        provider.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m freshtoken.mockprovider [--port N] ...``."""
    defaults = MockProviderConfig()
    parser = argparse.ArgumentParser(prog="python -m freshtoken.mockprovider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--lifetime", type=float, default=defaults.token_lifetime_seconds)
    parser.add_argument("--latency", type=float, default=defaults.latency_seconds)
    parser.add_argument("--grace", type=float, default=defaults.grace_seconds)
    parser.add_argument("--no-rotation", action="store_true")
    parser.add_argument("--no-reuse-detection", action="store_true")
    parser.add_argument("--client-id", default=defaults.client_id)
    parser.add_argument("--client-secret", default=defaults.client_secret)
    parser.add_argument("--client-auth", choices=sorted(CLIENT_AUTH_MODES), default="any")
    args = parser.parse_args(argv)
    config = MockProviderConfig(
        token_lifetime_seconds=args.lifetime,
        latency_seconds=args.latency,
        rotate_refresh_tokens=not args.no_rotation,
        reuse_detection=not args.no_reuse_detection,
        grace_seconds=args.grace,
        client_id=args.client_id,
        client_secret=args.client_secret,
        client_auth=args.client_auth,
    )
    serve(config, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
