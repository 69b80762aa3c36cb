"""Mock endpoints for the auth-mode grants (issue #12), mounted by :mod:`freshtoken.mockprovider`.

* ``POST /app/installations/{id}/access_tokens``: GitHub-App-like. The ``Authorization: Bearer``
  JWT must be RS256-signed by a registered app's private key (verified against its public key),
  name the app in ``iss``, be current (``iat``/``exp``, at most 10 minutes long, as GitHub
  requires), and the installation must belong to that app. Answers ``201 {token, expires_at}``.
* ``POST /bill/login``: BILL-like: JSON ``{username, password, organizationId, devKey}`` of a
  registered user gets ``{sessionId, organizationId, userId}``.
* ``POST /two-step/token``: a TWO_STEP-like login. JSON ``{username, password}`` (or
  ``{refresh_token}``) gets ``{token, refresh_token, expires_in}``; refresh tokens rotate and a
  spent one is refused.

State is in memory behind one lock; tests read it through :meth:`MockAuthModes.stats`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_INSTALLATION_PATH = re.compile(r"^/app/installations/([^/]+)/access_tokens$")
TWO_STEP_PATH = "/two-step/token"
BILL_PATH = "/bill/login"
MAX_JWT_SECONDS = 600
CLOCK_SKEW_SECONDS = 60


@dataclass
class _App:
    public_key: rsa.RSAPublicKey
    installations: set[str]


@dataclass
class AuthModeReply:
    """An answer of a mocked auth-mode endpoint."""

    status: int
    payload: dict[str, Any]


@dataclass
class MockAuthModes:
    """Registered GitHub Apps and TWO_STEP users, issued tokens and counters."""

    installation_token_lifetime_seconds: float = 3600.0
    two_step_token_lifetime_seconds: float = 3600.0
    # Epoch seconds; unit tests share freshtoken's FakeClock so JWT times agree.
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _apps: dict[str, _App] = field(default_factory=dict)
    _users: dict[str, str] = field(default_factory=dict)
    _two_step_refresh: dict[str, str] = field(default_factory=dict)  # live refresh token -> user
    _spent: set[str] = field(default_factory=set)
    _tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch)
    _stats: dict[str, Any] = field(
        default_factory=lambda: {
            "installation_token_calls": 0,
            "installation_tokens_issued": [],
            "jwt_rejected": 0,
            "jwt_issued_at": [],
            "two_step_calls": 0,
            "two_step_refresh_reused": 0,
        }
    )

    def register_app(self, app_id: str, public_key_pem: str, installation_id: str) -> None:
        """Accept JWTs of ``app_id`` signed by the key matching ``public_key_pem``."""
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("a GitHub App key is RSA")
        with self._lock:
            app = self._apps.setdefault(str(app_id), _App(key, set()))
            app.public_key = key
            app.installations.add(str(installation_id))

    def register_user(self, username: str, password: str) -> None:
        """Accept this TWO_STEP login."""
        with self._lock:
            self._users[username] = password

    def stats(self) -> dict[str, Any]:
        """A copy of the counters."""
        with self._lock:
            copy: dict[str, Any] = json.loads(json.dumps(self._stats))
        return copy

    def is_token_valid(self, token: str) -> bool:
        """Whether ``token`` was issued here and has not expired."""
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > self.clock()

    def route(
        self, method: str, path: str, authorization: str | None, body: bytes
    ) -> AuthModeReply | None:
        """Answer a request if it is for one of these endpoints, else None."""
        match = _INSTALLATION_PATH.match(path)
        if match is not None:
            if method != "POST":
                return AuthModeReply(405, {"message": "Method Not Allowed"})
            return self._installation_token(match.group(1), authorization)
        if path == TWO_STEP_PATH:
            if method != "POST":
                return AuthModeReply(405, {"message": "Method Not Allowed"})
            return self._two_step(body)
        if path == BILL_PATH:
            if method != "POST":
                return AuthModeReply(405, {"message": "Method Not Allowed"})
            return self._bill(body)
        return None

    def _bill(self, body: bytes) -> AuthModeReply:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return AuthModeReply(400, {"error": "invalid_request"})
        with self._lock:
            self._stats["bill_calls"] = self._stats.get("bill_calls", 0) + 1
            user = str(data.get("username") or "") if isinstance(data, dict) else ""
            if not user or self._users.get(user) != data.get("password") or not data.get("devKey"):
                return AuthModeReply(400, {"error": "BDC_1109", "message": "Invalid credentials"})
            session = "bill-" + secrets.token_urlsafe(18)
            self._tokens[session] = self.clock() + 35 * 60
        return AuthModeReply(
            200,
            {"sessionId": session, "organizationId": data.get("organizationId"), "userId": "u-1"},
        )

    # -- GitHub App ------------------------------------------------------------------------

    def _installation_token(self, installation_id: str, authorization: str | None) -> AuthModeReply:
        with self._lock:
            self._stats["installation_token_calls"] += 1
        claims = self._verified_claims(authorization)
        if claims is None:
            with self._lock:
                self._stats["jwt_rejected"] += 1
            # GitHub's answer to a bad or expired app JWT.
            return AuthModeReply(401, {"message": "A JSON web token could not be decoded"})
        with self._lock:
            app = self._apps.get(str(claims.get("iss")))
            if app is None or installation_id not in app.installations:
                return AuthModeReply(404, {"message": "Not Found"})
            token = "ghs_" + secrets.token_urlsafe(24)
            expiry = self.clock() + self.installation_token_lifetime_seconds
            self._tokens[token] = expiry
            self._stats["installation_tokens_issued"].append(token)
            self._stats["jwt_issued_at"].append(claims.get("iat"))
        expires_at = dt.datetime.fromtimestamp(expiry, dt.UTC).isoformat(timespec="seconds")
        return AuthModeReply(201, {"token": token, "expires_at": expires_at.replace("+00:00", "Z")})

    def _verified_claims(self, authorization: str | None) -> dict[str, Any] | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        parts = authorization[len("Bearer ") :].strip().split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return None
        if not isinstance(claims, dict):
            return None
        with self._lock:
            app = self._apps.get(str(claims.get("iss")))
        if app is None:
            return None
        try:
            app.public_key.verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return None
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.clock()
        if not isinstance(iat, int) or not isinstance(exp, int):
            return None
        if iat > now + CLOCK_SKEW_SECONDS or exp <= now or exp - iat > MAX_JWT_SECONDS:
            return None
        return claims

    # -- TWO_STEP --------------------------------------------------------------------------

    def _two_step(self, body: bytes) -> AuthModeReply:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return AuthModeReply(400, {"error": "invalid_request"})
        if not isinstance(data, dict):
            return AuthModeReply(400, {"error": "invalid_request"})
        with self._lock:
            self._stats["two_step_calls"] += 1
            presented = data.get("refresh_token")
            if isinstance(presented, str) and presented:
                if presented in self._spent:
                    self._stats["two_step_refresh_reused"] += 1
                    return AuthModeReply(401, {"error": "invalid_grant"})
                user = self._two_step_refresh.pop(presented, None)
                if user is None:
                    return AuthModeReply(401, {"error": "invalid_grant"})
                self._spent.add(presented)
            else:
                user = str(data.get("username") or "")
                if not user or self._users.get(user) != data.get("password"):
                    return AuthModeReply(401, {"error": "invalid_credentials"})
            token = "ts-" + secrets.token_urlsafe(18)
            refresh = "tsr-" + secrets.token_urlsafe(18)
            self._two_step_refresh[refresh] = user
            self._tokens[token] = self.clock() + self.two_step_token_lifetime_seconds
        return AuthModeReply(
            200,
            {
                "token": token,
                "refresh_token": refresh,
                "expires_in": self.two_step_token_lifetime_seconds,
            },
        )


def _b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad base64url") from exc
