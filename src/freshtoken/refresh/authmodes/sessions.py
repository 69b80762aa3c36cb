"""TWO_STEP and BILL grants: a login (or refresh) request whose answer is a session token.

TWO_STEP follows Nango's ``getTwoStepCredentials`` and ``parseRawCredentials('TWO_STEP')``
(packages/shared/lib/services/connection.service.ts): ``token_url`` (``refresh_url`` when the
entry has ``refresh_token_params``/``refresh_token_headers`` and the credentials a refresh
token), ``token_params``/``refresh_token_params`` and ``token_headers``/``refresh_token_headers``
filled from the stored credentials and connection_config, ``body_format`` json (default) or
form, ``token_request_method`` GET or POST; the answer is read with ``token_response``
(``token``, ``refresh_token``, ``token_expiration`` and ``token_expiration_strategy``
expireAt/expireIn), else ``token_expires_in_ms``, else 99 years. The provider-specific keys of
the credentials (username, password, ...) are kept. Not supported (skipped at refresh with a
permanent ``unsupported_two_step``): ``additional_steps``, ``assertion``, ``signature`` and the
xml body format.

BILL follows ``packages/shared/lib/auth/bill.ts``: POST ``token_url`` with JSON
``{username, password, organizationId, devKey}``; ``sessionId`` is the session, 35 minutes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from freshtoken.providers.catalog import UrlTemplateError, render_url
from freshtoken.refresh.authmodes.context import AuthModeContext
from freshtoken.refresh.authmodes.jws import unverified_claims
from freshtoken.refresh.authmodes.templates import interpolate_value, unresolved
from freshtoken.refresh.grants import PERMANENT, TRANSIENT, GrantError, TokenRequest, send
from freshtoken.store.credentials import iso, parse_datetime, parse_expires_in

TWO_STEP_RESERVED = frozenset({"type", "token", "refresh_token", "expires_at", "raw"})
TWO_STEP_DEFAULT_LIFETIME = dt.timedelta(days=365 * 99)  # Nango's DEFAULT_INFINITE_EXPIRES_AT_MS
REFRESH_MARGIN = dt.timedelta(minutes=15)  # Nango's REFRESH_MARGIN_MS, for JWT exp caps
BILL_SESSION_LIFETIME = dt.timedelta(minutes=35)
_UNSUPPORTED_TWO_STEP = ("additional_steps", "assertion", "signature")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _url(ctx: AuthModeContext, template: str | None, extra: Mapping[str, Any]) -> str:
    if not template:
        raise GrantError(PERMANENT, "missing_token_url")
    try:
        return render_url(template, {**ctx.connection_config, **extra})
    except UrlTemplateError:
        raise GrantError(PERMANENT, "missing_connection_config") from None


def _path(body: Any, path: str | None) -> Any:
    if not path:
        return body
    node = body
    for part in str(path).split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return None
    return node


def _duration_seconds(value: Any) -> float | None:
    seconds = parse_expires_in(value)
    if seconds is not None:
        return seconds
    text = str(value).strip().lower()
    for unit, factor in sorted(_DURATION_UNITS.items(), key=lambda kv: -len(kv[0])):
        number = text.removesuffix(unit).strip()
        if text.endswith(unit) and number.replace(".", "", 1).isdigit():
            return float(number) * factor
    return None


def _two_step_expiry(
    raw: Mapping[str, Any], spec_raw: Mapping[str, Any], token: str, refresh: Any, now: dt.datetime
) -> dt.datetime:
    response = spec_raw.get("token_response") or {}
    expiration = _path(raw, response.get("token_expiration"))
    strategy = response.get("token_expiration_strategy") or "expireAt"
    expires_at: dt.datetime | None = None
    if expiration not in (None, "") and strategy == "expireIn":
        seconds = _duration_seconds(expiration)
        if seconds is None:
            raise GrantError(TRANSIENT, "invalid_response")
        expires_at = now + dt.timedelta(seconds=seconds)
    elif expiration not in (None, ""):
        expires_at = parse_datetime(expiration)
    elif spec_raw.get("token_expires_in_ms") is not None:
        ms = spec_raw.get("token_expires_in_ms")
        if isinstance(ms, int | float) and ms > 0:
            expires_at = now + dt.timedelta(milliseconds=ms)
    else:
        expires_at = now + TWO_STEP_DEFAULT_LIFETIME
    # A JWT token (when the answer gives no expiry) or refresh token caps the expiry.
    for candidate in ([token] if expiration in (None, "") else []) + [refresh]:
        claims = unverified_claims(candidate) if isinstance(candidate, str) else None
        exp = claims.get("exp") if claims else None
        if isinstance(exp, int | float):
            capped = dt.datetime.fromtimestamp(exp, dt.UTC) - REFRESH_MARGIN
            if expires_at is None or capped < expires_at:
                expires_at = capped
    return expires_at or now + TWO_STEP_DEFAULT_LIFETIME


def refresh_two_step(ctx: AuthModeContext) -> tuple[dict[str, Any], bool]:
    """TWO_STEP: run the entry's token (or refresh) request; keep the provider-specific keys."""
    raw_spec = ctx.spec.raw
    if any(raw_spec.get(f) for f in _UNSUPPORTED_TWO_STEP):
        raise GrantError(PERMANENT, "unsupported_two_step")
    dynamic = {
        k: v for k, v in ctx.credentials.items() if k not in ("type", "token", "expires_at", "raw")
    }
    old_refresh = dynamic.get("refresh_token")
    has_refresh_config = bool(
        raw_spec.get("refresh_token_params") or raw_spec.get("refresh_token_headers")
    )
    is_refresh = has_refresh_config and bool(old_refresh)
    if is_refresh:
        url_template = ctx.spec.refresh_url or ctx.spec.token_url
        params = raw_spec.get("refresh_token_params") or {}
        headers = raw_spec.get("refresh_token_headers") or raw_spec.get("token_headers") or {}
    else:
        url_template = ctx.spec.token_url
        params = raw_spec.get("token_params") or {}
        headers = raw_spec.get("token_headers") or {}
    now = ctx.sent_at
    body = interpolate_value(dict(params), dynamic, ctx.connection_config, now)
    filled_headers = interpolate_value(dict(headers), dynamic, ctx.connection_config, now)
    if unresolved(body) or unresolved(filled_headers):
        raise GrantError(PERMANENT, "missing_credentials")
    request = TokenRequest(
        url=_url(ctx, url_template, dynamic),
        headers={"Accept": "application/json", **{k: str(v) for k, v in filled_headers.items()}},
        params=body,
        body_format=ctx.spec.body_format,
        method="GET" if raw_spec.get("token_request_method") == "GET" else "POST",
    )
    if request.method == "GET":
        request = TokenRequest(request.url, request.headers, body, "query", "GET")
    answer = _login(ctx, request)
    response = raw_spec.get("token_response") or {}
    token = _path(answer, response.get("token"))
    if not token:
        raise GrantError(TRANSIENT, "invalid_response", http_status=200)
    new_refresh = (
        _path(answer, response.get("refresh_token")) if response.get("refresh_token") else None
    )
    creds: dict[str, Any] = {
        k: v for k, v in dynamic.items() if k not in TWO_STEP_RESERVED and v is not None
    }
    creds.update(
        {
            "type": "TWO_STEP",
            "token": token,
            "expires_at": iso(_two_step_expiry(answer, raw_spec, str(token), new_refresh, now)),
            "raw": answer,
        }
    )
    if new_refresh:
        creds["refresh_token"] = new_refresh
    rotated = bool(new_refresh) and new_refresh != old_refresh
    return creds, rotated


def _login(ctx: AuthModeContext, request: TokenRequest) -> dict[str, Any]:
    """Send a login; a 401/403 means the stored credentials were refused: permanent."""
    try:
        return send(ctx.http, ctx.spec, request)
    except GrantError as error:
        if error.http_status in (401, 403) and not error.permanent:
            raise GrantError(
                PERMANENT, "invalid_credentials", http_status=error.http_status
            ) from None
        raise


def refresh_bill(ctx: AuthModeContext) -> tuple[dict[str, Any], bool]:
    """BILL: log in again for a new session (35 minutes)."""
    creds = ctx.credentials
    body = {
        "username": creds.get("username"),
        "password": creds.get("password"),
        "organizationId": creds.get("organization_id"),
        "devKey": creds.get("dev_key"),
    }
    if not all(body.values()):
        raise GrantError(PERMANENT, "missing_credentials")
    request = TokenRequest(
        url=_url(ctx, ctx.spec.token_url, {}),
        headers={"Accept": "application/json"},
        params=body,
        body_format="json",
    )
    answer = send(ctx.http, ctx.spec, request)
    session = answer.get("sessionId")
    if not isinstance(session, str) or not session:
        raise GrantError(TRANSIENT, "invalid_response", http_status=200)
    return {
        "type": "BILL",
        "username": creds.get("username"),
        "password": creds.get("password"),
        "organization_id": answer.get("organizationId") or creds.get("organization_id"),
        "dev_key": creds.get("dev_key"),
        "session_id": session,
        "user_id": answer.get("userId"),
        "expires_at": iso(ctx.sent_at + BILL_SESSION_LIFETIME),
        "raw": answer,
    }, False
