"""The mock provider's authorization endpoint: real authorization codes with PKCE (S256).

``GET /authorize`` auto-consents and redirects to ``redirect_uri`` with a code (or with
``error=access_denied`` when ``deny_consent`` is set). Codes are random, live
``auth_code_lifetime_seconds``, are single use and bound to the client, the redirect URI and the
PKCE challenge; ``POST /oauth/token`` with ``grant_type=authorization_code`` checks all of them
and starts a new token family, refreshable like a seeded one. A code presented twice is refused
and, as RFC 6749 §4.1.2 asks, the tokens issued for it are revoked.

Switches for the browser tests' failure paths (all off by default): ``tamper_state`` answers with
a different state, ``reissue_used_code`` hands out the last code again (a replay), and
``corrupt_code_challenge`` binds the code to a challenge the client's verifier cannot match.
Kept apart from :mod:`freshtoken.mockprovider`, which calls in here.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from freshtoken import mockprovider as mp

AUTHORIZE_PATH = "/authorize"


@dataclass
class AuthCode:
    """One issued authorization code and what it is bound to."""

    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scope: str
    expires_at: float
    used: bool = False
    family_id: str | None = None


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _redirect(redirect_uri: str, params: dict[str, str]) -> mp._Outcome:
    sep = "&" if urlsplit(redirect_uri).query else "?"
    location = redirect_uri + sep + urlencode(params)
    return mp._Outcome(302, b"", content_type="text/plain", headers=[("Location", location)])


def s256(verifier: str) -> str:
    """The S256 challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize(provider: mp.MockProvider, raw_query: str) -> mp._Outcome:
    """Answer ``GET /authorize``: validate, then redirect back with a code or an error."""
    query = parse_qs(raw_query, keep_blank_values=True)
    client_id = _first(query, "client_id")
    redirect_uri = _first(query, "redirect_uri")
    state = _first(query, "state")
    with provider._lock:
        cfg = provider.config
        stats = provider._stats
        stats["authorize_calls"] = stats.get("authorize_calls", 0) + 1
        # RFC 6749 §4.1.2.1: with a bad client or redirect URI, never redirect.
        if client_id is None or not mp._matches(client_id, cfg.client_id):
            return mp._oauth_error(400, "invalid_client", "unknown client_id")
        if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
            return mp._oauth_error(400, "invalid_request", "redirect_uri is required")
        back: dict[str, str] = {} if state is None else {"state": state}
        if cfg.tamper_state and state is not None:
            back["state"] = state[::-1] + "x"
        if _first(query, "response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", **back})
        challenge = _first(query, "code_challenge")
        method = _first(query, "code_challenge_method")
        if challenge is None and cfg.require_pkce:
            return _redirect(
                redirect_uri,
                {"error": "invalid_request", "error_description": "PKCE required", **back},
            )
        if challenge is not None and method != "S256":
            return _redirect(
                redirect_uri,
                {"error": "invalid_request", "error_description": "S256 required", **back},
            )
        if cfg.deny_consent:
            return _redirect(
                redirect_uri,
                {"error": "access_denied", "error_description": "The user denied access", **back},
            )
        codes: dict[str, AuthCode] = provider._auth_codes
        if cfg.reissue_used_code and provider._last_auth_code is not None:
            return _redirect(redirect_uri, {"code": provider._last_auth_code, **back})
        if cfg.corrupt_code_challenge and challenge is not None:
            challenge = s256(challenge)  # not what the client's verifier hashes to
        code = mp._new_token("mock-code-")
        codes[code] = AuthCode(
            client_id=client_id,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            scope=_first(query, "scope") or mp._DEFAULT_SCOPE,
            expires_at=time.time() + cfg.auth_code_lifetime_seconds,
        )
        provider._last_auth_code = code
        return _redirect(redirect_uri, {"code": code, **back})


def exchange(
    provider: mp.MockProvider, cfg: mp.MockProviderConfig, params: dict[str, Any]
) -> mp._Outcome:
    """The ``authorization_code`` grant; the caller holds the lock and authenticated the client."""
    stats = provider._stats
    stats["authorization_code_calls"] = stats.get("authorization_code_calls", 0) + 1
    code = params.get("code")
    record = provider._auth_codes.get(code) if isinstance(code, str) else None
    if record is None:
        stats["invalid_grant"] += 1
        return mp._oauth_error(400, "invalid_grant", "unknown authorization code")
    if record.used:
        stats["invalid_grant"] += 1
        stats["code_replays"] = stats.get("code_replays", 0) + 1
        if record.family_id is not None:  # RFC 6749 §4.1.2: revoke what the code produced
            family = provider._families.get(record.family_id)
            if family is not None:
                family.revoked = True
                for token, issued in list(provider._access_tokens.items()):
                    if issued.family_id == record.family_id:
                        del provider._access_tokens[token]
        return mp._oauth_error(400, "invalid_grant", "authorization code already used")
    record.used = True  # any failure below also spends it: codes are single use
    if record.expires_at <= time.time():
        stats["invalid_grant"] += 1
        return mp._oauth_error(400, "invalid_grant", "authorization code expired")
    if not mp._matches(record.client_id, cfg.client_id):
        stats["invalid_grant"] += 1
        return mp._oauth_error(400, "invalid_grant", "code issued to another client")
    if params.get("redirect_uri") != record.redirect_uri:
        stats["invalid_grant"] += 1
        return mp._oauth_error(400, "invalid_grant", "redirect_uri does not match")
    verifier = params.get("code_verifier")
    if record.code_challenge is not None:
        if not isinstance(verifier, str) or not mp._matches(s256(verifier), record.code_challenge):
            stats["invalid_grant"] += 1
            stats["pkce_failures"] = stats.get("pkce_failures", 0) + 1
            return mp._oauth_error(400, "invalid_grant", "PKCE verification failed")
    elif verifier is not None:
        return mp._oauth_error(400, "invalid_request", "code_verifier without a challenge")
    now = time.time()
    provider._family_seq += 1
    family_id = f"fam-{provider._family_seq}"
    rt = mp._new_token("mock-rt-")
    family = mp._Family(family_id, f"mock-user-{provider._family_seq}", record.scope, rt)
    provider._families[family_id] = family
    provider._refresh_tokens[rt] = mp._RefreshToken(family_id)
    record.family_id = family_id
    at = provider._new_access_token(cfg, family_id, family.subject, now)
    stats["successes"] += 1
    payload = provider._token_payload(cfg, at, record.scope)
    payload["refresh_token"] = rt
    return mp._Outcome(200, payload)


# -- OAuth 1.0a (request token, authorize, access token) ------------------------------------------

OAUTH1_PREFIX = "/oauth1/"


@dataclass
class TemporaryToken:
    """An OAuth 1.0a temporary credential and its state."""

    secret: str
    callback: str
    verifier: str | None = None
    used: bool = False


def _form_outcome(values: dict[str, str]) -> mp._Outcome:
    return mp._Outcome(200, urlencode(values), content_type="application/x-www-form-urlencoded")


def _verify(
    provider: mp.MockProvider, method: str, path: str, header: str | None, token_secret: str
) -> dict[str, str] | None:
    """The OAuth parameters of a correctly signed request by the configured client, else None."""
    from freshtoken.connect import oauth1

    params = oauth1.parse_header(header or "")
    signature = params.pop("oauth_signature", None)
    if signature is None or params.get("oauth_signature_method") != "HMAC-SHA1":
        return None
    if not mp._matches(params.get("oauth_consumer_key", ""), provider.config.client_id):
        return None
    base = oauth1.base_string(method, provider.url + path, params.items())
    expected = oauth1.signature(base, provider.config.client_secret, token_secret)
    return params if mp._matches(signature, expected) else None


def oauth1_endpoint(
    provider: mp.MockProvider, method: str, path: str, raw_query: str, header: str | None
) -> mp._Outcome:
    """``POST /oauth1/request_token``, ``GET /oauth1/authorize``, ``POST /oauth1/access_token``."""
    with provider._lock:
        temporary: dict[str, TemporaryToken] = provider._oauth1_temporary
        if path == "/oauth1/request_token" and method == "POST":
            params = _verify(provider, method, path, header, "")
            if params is None or not params.get("oauth_callback"):
                return mp._oauth_error(401, "invalid_signature", "bad signature or no callback")
            token = mp._new_token("mock-rt1-")
            temporary[token] = TemporaryToken(mp._new_token("mock-ts1-"), params["oauth_callback"])
            return _form_outcome(
                {
                    "oauth_token": token,
                    "oauth_token_secret": temporary[token].secret,
                    "oauth_callback_confirmed": "true",
                }
            )
        if path == "/oauth1/authorize" and method == "GET":
            token = _first(parse_qs(raw_query), "oauth_token") or ""
            record = temporary.get(token)
            if record is None:
                return mp._oauth_error(400, "invalid_request", "unknown oauth_token")
            if provider.config.deny_consent:
                return _redirect(record.callback, {"denied": token})
            record.verifier = mp._new_token("mock-ver-")
            return _redirect(
                record.callback, {"oauth_token": token, "oauth_verifier": record.verifier}
            )
        if path == "/oauth1/access_token" and method == "POST":
            presented = _oauth_token_of(header)
            record = temporary.get(presented or "")
            if record is None or record.used or record.verifier is None:
                return mp._oauth_error(401, "invalid_token", "unknown or used temporary token")
            params = _verify(provider, method, path, header, record.secret)
            record.used = True
            if params is None or not mp._matches(params.get("oauth_verifier", ""), record.verifier):
                return mp._oauth_error(401, "invalid_signature", "bad signature or verifier")
            token, secret = mp._new_token("mock-at-"), mp._new_token("mock-as1-")
            provider._oauth1_access[token] = secret
            return _form_outcome({"oauth_token": token, "oauth_token_secret": secret})
        return mp._Outcome(404, {"error": "not_found", "path": path})


def _oauth_token_of(header: str | None) -> str | None:
    from freshtoken.connect import oauth1

    return oauth1.parse_header(header or "").get("oauth_token")
