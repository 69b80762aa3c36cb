"""The token-endpoint calls (refresh-token and client-credentials grants) and their parsing.

The HTTP call itself goes through :meth:`freshtoken.refresh.http.ProviderHttp.send` (one choke
point: deadline, body cap). Every provider failure is classified here, in one place:
``permanent`` (the grant or client is dead; retrying cannot help and the connection needs
re-authorisation) or ``transient`` (network, 5xx, 429, malformed answers; retry later). A
provider entry extends the mapping with ``refresh_error_codes`` and ``error_in_ok_false``.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from freshtoken.providers.catalog import ProviderSpec, UrlTemplateError, render_url
from freshtoken.refresh.http import (
    ProviderCallError,
    ProviderHttp,
    ProviderRequest,
    ProviderResponse,
)
from freshtoken.refresh.policy import PERMANENT_ERROR_CODES
from freshtoken.store.credentials import iso, parse_datetime, parse_expires_in

PERMANENT = "permanent"
TRANSIENT = "transient"


class GrantError(Exception):
    """A failed grant, classified. The message never contains a token or secret."""

    def __init__(
        self,
        error_class: str,
        error_code: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{error_class} refresh failure: {error_code}")
        self.error_class = error_class
        self.error_code = error_code
        self.http_status = http_status
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """True when retrying cannot help."""
        return self.error_class == PERMANENT


@dataclass(frozen=True)
class GrantRequest:
    """Everything one grant needs (secrets stay in memory only)."""

    spec: ProviderSpec
    connection_config: Mapping[str, Any]
    client_id: str | None
    client_secret: str | None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # "-0000" means UTC with unknown local zone (RFC 5322)
        parsed = parsed.replace(tzinfo=dt.UTC)
    return max(0.0, (parsed - dt.datetime.now(dt.UTC)).total_seconds())


def _error_code(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in ("error", "status", "error_code", "code"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):  # {"error": {"code": ...}} shapes
            inner = value.get("code") or value.get("type")
            if isinstance(inner, str) and inner:
                return inner
    return None


def classify(spec: ProviderSpec, status: int, body: Any, headers: Mapping[str, str]) -> GrantError:
    """Classify a failed token-endpoint answer (called only for answers that are not a token)."""
    code = _error_code(body)
    permanent_codes = PERMANENT_ERROR_CODES | spec.permanent_error_codes
    if code is not None and code in spec.transient_error_codes:
        return GrantError(TRANSIENT, code, http_status=status)
    if code is not None and code in permanent_codes:
        return GrantError(PERMANENT, code, http_status=status)
    if status == 429:
        return GrantError(
            TRANSIENT,
            code or "rate_limited",
            http_status=status,
            retry_after=_retry_after(headers.get("retry-after")),
        )
    if status >= 500 or status in (408, 425):
        return GrantError(TRANSIENT, code or "server_error", http_status=status)
    if status in (401, 403) and code is None:
        # An unexplained 401/403 from a token endpoint means the client credentials were refused.
        return GrantError(PERMANENT, "invalid_client", http_status=status)
    # Unlisted 4xx codes (e.g. invalid_request) are usually request-building or provider quirks;
    # they count toward exhaustion day by day instead of killing the connection at once.
    return GrantError(TRANSIENT, code or f"http_{status}", http_status=status)


def _basic_auth(client_id: str, client_secret: str) -> str:
    # RFC 6749 §2.3.1: each part is form-urlencoded before base64 (secrets with ':' or '+' break
    # otherwise).
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def build_request(req: GrantRequest, url: str, params: dict[str, str]) -> ProviderRequest:
    """The token request: client authentication per the provider entry, form or JSON body."""
    spec = req.spec
    headers = {"Accept": "application/json"}
    if spec.token_request_auth_method == "basic" and req.client_id:  # noqa: S105 - a method name
        headers["Authorization"] = _basic_auth(req.client_id, req.client_secret or "")
    else:
        if req.client_id:
            params.setdefault("client_id", req.client_id)
        if req.client_secret:
            params.setdefault("client_secret", req.client_secret)
    if spec.body_format == "json":
        return ProviderRequest(url=url, headers=headers, json=params)
    return ProviderRequest(url=url, headers=headers, form=params)


def parse_token_response(spec: ProviderSpec, response: ProviderResponse) -> dict[str, Any]:
    """The token body of a successful answer, or the classified :class:`GrantError`."""
    try:
        body: Any = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if not response.is_success:
        raise classify(spec, response.status_code, body, response.headers)
    if not isinstance(body, dict):
        raise GrantError(TRANSIENT, "invalid_response", http_status=response.status_code)
    if spec.error_in_ok_false and body.get("ok") is False:
        raise classify(spec, 400, body, response.headers)
    if not (body.get("access_token") or body.get("token")):
        # 200 with an error body (HubSpot/Withings style) or an unusable token response.
        if _error_code(body) is not None:
            raise classify(spec, 400, body, response.headers)
        raise GrantError(TRANSIENT, "invalid_response", http_status=response.status_code)
    return body


async def _post(
    http: ProviderHttp,
    req: GrantRequest,
    url: str,
    params: dict[str, str],
    deadline: float | None,
) -> dict[str, Any]:
    try:
        response = await http.send(build_request(req, url, params), deadline=deadline)
    except ProviderCallError as exc:
        raise GrantError(TRANSIENT, exc.code) from None
    return parse_token_response(req.spec, response)


def _url(req: GrantRequest, prefer_refresh_url: bool) -> str:
    spec = req.spec
    template = (spec.refresh_url if prefer_refresh_url else None) or spec.token_url
    if not template:
        raise GrantError(PERMANENT, "missing_token_url")
    try:
        return render_url(template, req.connection_config)
    except UrlTemplateError:
        raise GrantError(PERMANENT, "missing_connection_config") from None


def _string_params(params: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in params.items() if v is not None}


def expiry_from(
    body: Mapping[str, Any], sent_at: dt.datetime, default_lifetime: float
) -> dt.datetime:
    """The expiry of a token response, measured from when the request was sent.

    Accepts an absolute ``expires_at`` or a relative ``expires_in`` (int, float or numeric
    string). A response with neither gets ``default_lifetime``: never "never".
    """
    absolute = parse_datetime(body.get("expires_at"))
    if absolute is not None:
        return absolute
    relative = parse_expires_in(body.get("expires_in"))
    if relative is None:
        relative = default_lifetime
    return sent_at + dt.timedelta(seconds=relative)


async def refresh_oauth2(
    http: ProviderHttp,
    req: GrantRequest,
    credentials: Mapping[str, Any],
    *,
    sent_at: dt.datetime,
    default_lifetime: float,
    deadline: float | None = None,
) -> tuple[dict[str, Any], bool]:
    """Run the refresh-token grant; returns the new OAUTH2 credentials and whether the RT rotated.

    A response without a refresh token keeps the old one (Dropbox, Google); a new one replaces it.
    """
    old_rt = str(credentials.get("refresh_token") or "")
    params = _string_params(req.spec.refresh_params or req.spec.token_params)
    params["grant_type"] = "refresh_token"
    params["refresh_token"] = old_rt
    body = await _post(http, req, _url(req, prefer_refresh_url=True), params, deadline)
    new_rt = body.get("refresh_token")
    rotated = isinstance(new_rt, str) and bool(new_rt) and new_rt != old_rt
    new_creds: dict[str, Any] = {
        "type": "OAUTH2",
        "access_token": str(body.get("access_token") or body.get("token")),
        "refresh_token": new_rt if isinstance(new_rt, str) and new_rt else old_rt,
        "expires_at": iso(expiry_from(body, sent_at, default_lifetime)),
        "raw": body,
    }
    if credentials.get("config_override"):
        new_creds["config_override"] = credentials["config_override"]
    return new_creds, rotated


async def client_credentials(
    http: ProviderHttp,
    req: GrantRequest,
    credentials: Mapping[str, Any],
    *,
    sent_at: dt.datetime,
    default_lifetime: float,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Re-run the client-credentials grant with the connection's own client id and secret."""
    params = _string_params(req.spec.token_params)
    params["grant_type"] = "client_credentials"
    scopes = req.connection_config.get("oauth_scopes")
    if isinstance(scopes, str) and scopes:
        params["scope"] = " ".join(s.strip() for s in scopes.split(",") if s.strip())
    body = await _post(http, req, _url(req, prefer_refresh_url=False), params, deadline)
    return {
        "type": "OAUTH2_CC",
        "token": str(body.get("access_token") or body.get("token")),
        "expires_at": iso(expiry_from(body, sent_at, default_lifetime)),
        "client_id": credentials.get("client_id"),
        "client_secret": credentials.get("client_secret"),
        "raw": body,
    }
