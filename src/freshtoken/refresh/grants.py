"""The token-endpoint calls (refresh-token and client-credentials grants) and their parsing.

Every call goes through :func:`asend` and :meth:`freshtoken.refresh.http.ProviderHttp.send` (one
choke point: hard deadline, body cap; :func:`send` is its sync form). Every provider failure is
classified here, in one place: ``permanent`` (the grant or client is
dead; retrying cannot help and the connection needs re-authorisation) or ``transient`` (network,
5xx, 429, malformed answers; retry later). A provider entry extends the mapping with
``refresh_error_codes`` and ``error_in_ok_false``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson

from freshtoken.outbound import (
    DEFAULT_MAX_RESPONSE_BYTES,
    PERMISSIVE,
    OutboundDenied,
    OutboundPolicy,
    ResponseTooLarge,
    read_capped,
    sanitize_provider_text,
    url_host_values,
)
from freshtoken.providers.catalog import (
    ProviderSpec,
    UrlHostError,
    UrlTemplateError,
    interpolate_text,
    render_url,
)
from freshtoken.refresh.http import (
    ProviderCallError,
    ProviderHttp,
    ProviderRequest,
    check_outbound,
)
from freshtoken.refresh.policy import PERMANENT_ERROR_CODES
from freshtoken.store.credentials import iso, parse_datetime, parse_expires_in

if TYPE_CHECKING:
    from freshtoken.settings import Settings

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
    # Where the request may go and how much of the answer is read (freshtoken.outbound).
    outbound: OutboundPolicy = PERMISSIVE
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    deadline_seconds: float | None = None  # overall time for reading the answer

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        spec: ProviderSpec,
        connection_config: Mapping[str, Any],
        client_id: str | None,
        client_secret: str | None,
    ) -> GrantRequest:
        """A request carrying the settings' outbound policy, body cap and provider deadline."""
        return cls(
            spec=spec,
            connection_config=connection_config,
            client_id=client_id,
            client_secret=client_secret,
            outbound=OutboundPolicy.from_settings(settings),
            max_response_bytes=settings.provider_max_response_bytes,
            deadline_seconds=settings.provider_deadline,
        )


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


def _error_code(body: Any, secrets: tuple[str | None, ...] = ()) -> str | None:
    # The provider chooses this text and it reaches logs, the API and the database: cleaned
    # (control characters, ANSI, length, echoed secrets) before anything else sees it.
    if not isinstance(body, dict):
        return None
    for key in ("error", "status", "error_code", "code"):
        value = body.get(key)
        if isinstance(value, dict):  # {"error": {"code": ...}} shapes
            value = value.get("code") or value.get("type")
        if isinstance(value, str) and value:
            return sanitize_provider_text(value, secrets=secrets) or "invalid_error_code"
    return None


def classify(
    spec: ProviderSpec,
    status: int,
    body: Any,
    headers: Mapping[str, str],
    secrets: tuple[str | None, ...] = (),
) -> GrantError:
    """Classify a failed token-endpoint answer (called only for answers that are not a token).

    ``secrets`` are the values the request carried; a provider echoing one back in its error
    code gets it redacted.
    """
    code = _error_code(body, secrets)
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


@dataclass(frozen=True)
class TokenRequest:
    """One request to a token endpoint, fully built but not sent (secrets in memory only)."""

    url: str
    headers: dict[str, str]
    params: dict[str, Any]
    body_format: str = "form"  # form, json or query (parameters in the URL)
    method: str = "POST"
    # The outbound policy (issue 10): checked in send(), the one choke point.
    outbound: OutboundPolicy = PERMISSIVE
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    deadline_seconds: float | None = None


def _client_auth(req: GrantRequest, params: dict[str, Any], headers: dict[str, str]) -> None:
    """Authenticate the client the way the entry asks (Nango's token_request_auth_method)."""
    method = req.spec.token_request_auth_method
    if method == "basic" and req.client_id:
        headers["Authorization"] = _basic_auth(req.client_id, req.client_secret or "")
    elif method == "custom" and req.client_id:
        # Nango: "custom" sends the client as username/password form fields (zoominfo).
        params.setdefault("username", req.client_id)
        params.setdefault("password", req.client_secret or "")
    elif method == "private_key_jwt":
        pass  # client_id and the signed assertion are added by the grant (client_credentials)
    else:
        if req.client_id:
            params.setdefault("client_id", req.client_id)
        if req.client_secret:
            params.setdefault("client_secret", req.client_secret)


def prepare(req: GrantRequest, url: str, params: dict[str, Any]) -> TokenRequest:
    """Build the token request for ``params``: client authentication and body format."""
    headers = {"Accept": "application/json"}
    _client_auth(req, params, headers)
    return TokenRequest(
        url=url,
        headers=headers,
        params=params,
        body_format=req.spec.body_format,
        outbound=req.outbound,
        max_response_bytes=req.max_response_bytes,
        deadline_seconds=req.deadline_seconds,
    )


def _parse(
    spec: ProviderSpec,
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    secrets: tuple[str | None, ...] = (),
) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or the classified :class:`GrantError`.

    ``secrets`` are what the request carried: a provider that echoes one back in its error text
    has it redacted before the text reaches a log line, the API or the database.
    """
    try:
        body: Any = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    if not 200 <= status < 300:
        raise classify(spec, status, body, headers, secrets)
    if not isinstance(body, dict):
        raise GrantError(TRANSIENT, "invalid_response", http_status=status)
    if spec.error_in_ok_false and body.get("ok") is False:
        raise classify(spec, 400, body, headers, secrets)
    return body


def _check_outbound(request: TokenRequest) -> None:
    """Refuse a URL the outbound policy denies, before any secret leaves."""
    try:
        request.outbound.check(request.url)
    except OutboundDenied:
        # Recorded like any permanent failure (a config fix is needed): the secret never
        # leaves, and the log line carries the reason, not the URL.
        raise GrantError(PERMANENT, "outbound_denied") from None


# Codes of ProviderHttp failures that no retry can fix: the URL itself is unusable.
_PERMANENT_CALL_ERRORS = frozenset({"invalid_token_url", "outbound_denied"})


async def asend(
    http: ProviderHttp, spec: ProviderSpec, request: TokenRequest, *, deadline: float | None = None
) -> dict[str, Any]:
    """The one provider call every grant goes through: send under the hard deadline with the
    body cap (:meth:`ProviderHttp.send`), parse JSON, classify failures.

    Returns the JSON object of a 2xx answer; raises :class:`GrantError` otherwise. Whether the
    object holds a usable token is the grant's business.

    The outbound policy applies here, so every grant is covered: the URL is checked before any
    secret leaves (``outbound_denied``), redirects are never followed, the body is read
    incrementally up to the cap within the deadline, and provider error text is sanitised
    (echoed secrets redacted) before it is classified.
    """
    if request.deadline_seconds is not None:
        deadline = (
            request.deadline_seconds
            if deadline is None
            else min(deadline, request.deadline_seconds)
        )
    outbound = ProviderRequest(
        url=request.url,
        headers=request.headers,
        form=request.params if request.body_format not in ("json", "query") else None,
        json=request.params if request.body_format == "json" else None,
        params=request.params if request.body_format == "query" else None,
        method=request.method,
    )
    try:
        # The request's own policy (e.g. a stricter one a caller chose); ProviderHttp applies
        # the settings' policy to every send, so the same policy is not checked (and, in
        # production, the host resolved) twice.
        if request.outbound != http.outbound:
            await check_outbound(request.outbound, request.url)
        response = await http.send(outbound, deadline=deadline)
    except ProviderCallError as exc:
        kind = PERMANENT if exc.code in _PERMANENT_CALL_ERRORS else TRANSIENT
        raise GrantError(kind, exc.code) from None
    return _parse(
        spec, response.status_code, response.headers, response.content, _request_secrets(request)
    )


def send(
    http: ProviderHttp | httpx.Client, spec: ProviderSpec, request: TokenRequest
) -> dict[str, Any]:
    """:func:`asend` for sync grants (the auth modes, run in a worker thread by the core).

    Given the core's :class:`ProviderHttp`, the call goes through the same choke point on a
    short-lived loop of this thread; a plain ``httpx.Client`` (tools, tests) gets the same policy:
    outbound check, no redirects, capped body within the deadline, sanitised errors.
    """
    if isinstance(http, ProviderHttp):

        async def once() -> dict[str, Any]:
            try:
                return await asend(http, spec, request)
            finally:
                await http.aclose()  # this loop's client dies with the loop

        return asyncio.run(once())
    _check_outbound(request)
    kwargs: dict[str, Any] = {"headers": request.headers}
    if request.body_format == "json":
        kwargs["json"] = request.params
    elif request.body_format == "query":
        kwargs["params"] = request.params
    else:
        kwargs["data"] = request.params
    started = time.monotonic()
    try:
        built = http.build_request(request.method, request.url, **kwargs)
        # Never follow a redirect, whatever the injected client says: the policy checked this
        # URL, not wherever a provider would bounce the client secret to.
        response = http.send(built, stream=True, follow_redirects=False)
        try:
            deadline = (
                None if request.deadline_seconds is None else started + request.deadline_seconds
            )
            content = read_capped(response, request.max_response_bytes, deadline)
        finally:
            response.close()
    except ResponseTooLarge:
        raise GrantError(
            TRANSIENT, "response_too_large", http_status=response.status_code
        ) from None
    except httpx.TimeoutException:
        raise GrantError(TRANSIENT, "timeout") from None
    except httpx.TransportError:
        raise GrantError(TRANSIENT, "connection_error") from None
    except httpx.InvalidURL:
        raise GrantError(PERMANENT, "invalid_token_url") from None
    return _parse(spec, response.status_code, response.headers, content, _request_secrets(request))


_SECRET_PARAMS = ("refresh_token", "client_secret", "password", "client_assertion", "assertion")


def _request_secrets(request: TokenRequest) -> tuple[str | None, ...]:
    """Every secret a token request carries (to redact a provider that echoes one back)."""
    values = [request.params.get(k) for k in _SECRET_PARAMS]
    auth = request.headers.get("Authorization", "")
    if " " in auth:
        values.append(auth.split(" ", 1)[1])
    return tuple(v for v in values if isinstance(v, str) and v)


HttpClient = ProviderHttp | httpx.Client


def _expect_token(req: GrantRequest, body: dict[str, Any]) -> dict[str, Any]:
    if not (body.get("access_token") or body.get("token")):
        # 200 with an error body (HubSpot/Withings style) or an unusable token response.
        if _error_code(body) is not None:
            raise classify(req.spec, 400, body, {}, (req.client_secret,))
        raise GrantError(TRANSIENT, "invalid_response", http_status=200)
    return body


def _url(req: GrantRequest, prefer_refresh_url: bool) -> str:
    spec = req.spec
    refresh_template = spec.refresh_url if prefer_refresh_url else None
    grant = "OAUTH2" if prefer_refresh_url else spec.auth_mode
    template = refresh_template or spec.token_url_for(grant)
    if not template:
        raise GrantError(PERMANENT, "missing_token_url")
    try:
        url = render_url(template, req.connection_config, host_values=url_host_values(spec))
    except UrlHostError:
        raise GrantError(PERMANENT, "invalid_connection_config") from None
    except UrlTemplateError:
        raise GrantError(PERMANENT, "missing_connection_config") from None
    if prefer_refresh_url and refresh_template is None:
        # Nango's refresh-token grant posts to the token URL's origin and path only: simple-oauth2
        # is given tokenHost/tokenPath (packages/shared/lib/clients/oauth2.client.ts), so a query
        # string in token_url is not sent when refreshing.
        url = url.split("?", 1)[0].split("#", 1)[0]
    return url


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


def build_refresh_request(req: GrantRequest, credentials: Mapping[str, Any]) -> TokenRequest:
    """The refresh-token grant request freshtoken sends for this entry and connection.

    As Nango's generic refresh: ``refresh_params``, else ``token_params``, then
    ``grant_type=refresh_token`` and the refresh token; ``token_headers`` are not sent
    (Nango's simple-oauth2 client does not send them on refresh either).
    """
    params: dict[str, Any] = _string_params(req.spec.refresh_params or req.spec.token_params)
    params["grant_type"] = "refresh_token"
    params["refresh_token"] = str(credentials.get("refresh_token") or "")
    return prepare(req, _url(req, prefer_refresh_url=True), params)


async def arefresh_oauth2(
    http: ProviderHttp,
    req: GrantRequest,
    credentials: Mapping[str, Any],
    *,
    sent_at: dt.datetime,
    default_lifetime: float,
    deadline: float | None = None,
) -> tuple[dict[str, Any], bool]:
    """Run the refresh-token grant; returns the new OAUTH2 credentials and whether the RT rotated.

    The refresh core's path: the call is cut at ``deadline`` (inside the lock's TTL).
    """
    request = build_refresh_request(req, credentials)
    body = await asend(http, req.spec, request, deadline=deadline)
    return _refreshed(req, credentials, body, sent_at, default_lifetime)


def refresh_oauth2(
    http: HttpClient,
    req: GrantRequest,
    credentials: Mapping[str, Any],
    *,
    sent_at: dt.datetime,
    default_lifetime: float,
) -> tuple[dict[str, Any], bool]:
    """:func:`arefresh_oauth2` for sync grants (auth modes, in a worker thread) and tools."""
    body = send(http, req.spec, build_refresh_request(req, credentials))
    return _refreshed(req, credentials, body, sent_at, default_lifetime)


def _refreshed(
    req: GrantRequest,
    credentials: Mapping[str, Any],
    answer: dict[str, Any],
    sent_at: dt.datetime,
    default_lifetime: float,
) -> tuple[dict[str, Any], bool]:
    """The new OAUTH2 credentials from a refresh answer.

    A response without a refresh token keeps the old one (Dropbox, Google); a new one replaces it.
    """
    old_rt = str(credentials.get("refresh_token") or "")
    body = _expect_token(req, answer)
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


def _cc_params(req: GrantRequest) -> dict[str, str]:
    config = req.connection_config
    params: dict[str, str] = {}
    for key, value in _string_params(req.spec.token_params).items():
        filled = interpolate_text(value, config)
        if filled is not None:
            params[key] = filled
    params["grant_type"] = "client_credentials"
    scopes = config.get("oauth_scopes")
    if isinstance(scopes, str) and scopes:
        separator = str(req.spec.raw.get("scope_separator") or " ")
        params["scope"] = separator.join(s.strip() for s in scopes.split(",") if s.strip())
    extra = config.get("authorization_params")
    if isinstance(extra, Mapping):
        params.update({str(k): str(v) for k, v in extra.items() if v is not None})
    return params


def build_client_credentials_request(
    req: GrantRequest, credentials: Mapping[str, Any], sent_at: dt.datetime
) -> TokenRequest:
    """The client-credentials request, with the connection's own client id and secret.

    As Nango: ``token_params`` filled from connection_config (a parameter whose placeholder has
    no value is left out rather than sent as ``${...}``), ``scope`` from ``oauth_scopes`` joined
    with the entry's ``scope_separator``, ``connection_config.authorization_params`` last.
    """
    params = _cc_params(req)
    url = _url(req, prefer_refresh_url=False)
    if req.spec.token_request_auth_method == "private_key_jwt":  # noqa: S105 - a method name
        # Imported here: the authmodes package imports this module.
        from freshtoken.refresh.authmodes.client_assertion import client_assertion_params

        params.update(
            client_assertion_params(
                str(credentials.get("client_id") or ""),
                credentials.get("client_private_key"),
                url,
                sent_at,
            )
        )
    return prepare(req, url, params)


async def aclient_credentials(
    http: ProviderHttp,
    req: GrantRequest,
    credentials: Mapping[str, Any],
    *,
    sent_at: dt.datetime,
    default_lifetime: float,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Re-run the client-credentials grant (the refresh core's path, cut at ``deadline``)."""
    request = build_client_credentials_request(req, credentials, sent_at)
    body = await asend(http, req.spec, request, deadline=deadline)
    return _cc_issued(req, credentials, body, sent_at, default_lifetime)


def client_credentials(
    http: HttpClient,
    req: GrantRequest,
    credentials: Mapping[str, Any],
    *,
    sent_at: dt.datetime,
    default_lifetime: float,
) -> dict[str, Any]:
    """:func:`aclient_credentials` for sync callers (tools, tests)."""
    body = send(http, req.spec, build_client_credentials_request(req, credentials, sent_at))
    return _cc_issued(req, credentials, body, sent_at, default_lifetime)


def _cc_issued(
    req: GrantRequest,
    credentials: Mapping[str, Any],
    answer: dict[str, Any],
    sent_at: dt.datetime,
    default_lifetime: float,
) -> dict[str, Any]:
    body = _expect_token(req, answer)
    out = {
        "type": "OAUTH2_CC",
        "token": str(body.get("access_token") or body.get("token")),
        "expires_at": iso(expiry_from(body, sent_at, default_lifetime)),
        "client_id": credentials.get("client_id"),
        "client_secret": credentials.get("client_secret"),
        "raw": body,
    }
    for kept in ("client_certificate", "client_private_key"):
        if credentials.get(kept):
            out[kept] = credentials[kept]
    return out


def authorization_code(
    http: HttpClient,
    req: GrantRequest,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    sent_at: dt.datetime,
    default_lifetime: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Exchange an authorization code (the connect flow); returns (OAUTH2 credentials, raw body).

    Same request building, client authentication and failure classification as the refresh
    grant: the catalog's token_url and token_params, Basic or body client authentication.
    """
    params = _string_params(req.spec.token_params)
    params["grant_type"] = "authorization_code"
    params["code"] = code
    params["redirect_uri"] = redirect_uri
    if code_verifier is not None:
        params["code_verifier"] = code_verifier
    request = prepare(req, _url(req, prefer_refresh_url=False), params)
    body = _expect_token(req, send(http, req.spec, request))
    credentials: dict[str, Any] = {
        "type": "OAUTH2",
        "access_token": str(body.get("access_token") or body.get("token")),
        "raw": body,
    }
    # A token answered without any expiry does not expire (GitHub OAuth apps), as in Nango.
    if body.get("expires_at") is not None or body.get("expires_in") is not None:
        credentials["expires_at"] = iso(expiry_from(body, sent_at, default_lifetime))
    refresh_token = body.get("refresh_token")
    if isinstance(refresh_token, str) and refresh_token:
        credentials["refresh_token"] = refresh_token
    return credentials, body
