"""OAuth 1.0a (RFC 5849) for the catalog's OAUTH1 providers: HMAC-SHA1 request signing.

Three legs: a signed request for a temporary token (``request_url``, with ``oauth_callback``),
the user's authorization (``authorization_url?oauth_token=...``), and a signed exchange of the
temporary token and ``oauth_verifier`` for the token credentials (``token_url``). The temporary
token's secret never leaves the server (it is kept encrypted with the flow's state).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Iterable, Mapping

import httpx

from freshtoken.outbound import OutboundDenied, OutboundPolicy


class OAuth1Error(Exception):
    """A provider refused or garbled a leg; the message names no secret."""


def percent(value: str) -> str:
    """RFC 5849 §3.6 percent-encoding (unreserved characters only are left as they are)."""
    return urllib.parse.quote(value, safe="~")


def base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The signature base string (§3.4.1): method, base URI, normalized parameters."""
    parts = urllib.parse.urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host if parts.port in (None, default_port) else f"{host}:{parts.port}"
    base_uri = f"{scheme}://{netloc}{parts.path or '/'}"
    pairs = list(params) + urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    normalized = "&".join(f"{k}={v}" for k, v in sorted((percent(k), percent(v)) for k, v in pairs))
    return "&".join((method.upper(), percent(base_uri), percent(normalized)))


def signature(base: str, consumer_secret: str, token_secret: str = "") -> str:
    """HMAC-SHA1 of the base string, keyed by the two secrets (§3.4.2)."""
    key = f"{percent(consumer_secret)}&{percent(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def authorization_header(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str | None = None,
    token_secret: str = "",
    extra: Mapping[str, str] | None = None,
    body: Mapping[str, str] | None = None,
    nonce: str | None = None,
    timestamp: str | None = None,
) -> str:
    """The ``Authorization: OAuth ...`` header of one signed request."""
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": timestamp or str(int(time.time())),
        "oauth_version": "1.0",
        **(extra or {}),
    }
    if token is not None:
        oauth["oauth_token"] = token
    pairs = list(oauth.items()) + list((body or {}).items())
    oauth["oauth_signature"] = signature(
        base_string(method, url, pairs), consumer_secret, token_secret
    )
    return "OAuth " + ", ".join(f'{percent(k)}="{percent(v)}"' for k, v in sorted(oauth.items()))


def parse_header(header: str) -> dict[str, str]:
    """The parameters of an ``OAuth ...`` Authorization header."""
    if not header.startswith("OAuth "):
        return {}
    out: dict[str, str] = {}
    for item in header[6:].split(","):
        key, _, value = item.strip().partition("=")
        out[urllib.parse.unquote(key)] = urllib.parse.unquote(value.strip('"'))
    return out


def _form(response: httpx.Response) -> dict[str, str]:
    if not response.is_success:
        raise OAuth1Error(f"provider answered HTTP {response.status_code}")
    values = dict(urllib.parse.parse_qsl(response.text))
    if not values.get("oauth_token") or "oauth_token_secret" not in values:
        raise OAuth1Error("provider answer had no oauth_token/oauth_token_secret")
    return values


def _allowed(outbound: OutboundPolicy, url: str) -> None:
    """The outbound policy, as for every request freshtoken makes: the consumer secret signs
    these requests, so they go only where production allows."""
    try:
        outbound.check(url)
    except OutboundDenied:
        raise OAuth1Error("the provider URL is refused by the outbound policy") from None


def request_token(
    http: httpx.Client,
    url: str,
    consumer_key: str,
    consumer_secret: str,
    callback: str,
    *,
    outbound: OutboundPolicy,
) -> dict[str, str]:
    """Leg 1: a temporary token (and its secret) for ``callback``."""
    _allowed(outbound, url)
    header = authorization_header(
        "POST",
        url,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        extra={"oauth_callback": callback},
    )
    try:
        response = http.post(url, headers={"Authorization": header})
    except httpx.HTTPError:
        raise OAuth1Error("provider unreachable") from None
    return _form(response)


def access_token(
    http: httpx.Client,
    url: str,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    verifier: str,
    *,
    outbound: OutboundPolicy,
) -> dict[str, str]:
    """Leg 3: the token credentials for an authorized temporary token."""
    _allowed(outbound, url)
    header = authorization_header(
        "POST",
        url,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        token=token,
        token_secret=token_secret,
        extra={"oauth_verifier": verifier},
    )
    try:
        response = http.post(url, headers={"Authorization": header})
    except httpx.HTTPError:
        raise OAuth1Error("provider unreachable") from None
    return _form(response)
