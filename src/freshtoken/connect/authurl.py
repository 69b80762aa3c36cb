"""The authorization URL of an OAuth 2 authorization-code flow, built from a catalog entry.

Follows Nango's order and rules: the URL is the origin and path of the interpolated
``authorization_url``; the query is ``response_type=code``, ``client_id``, ``redirect_uri``,
``scope`` (the integration's comma-separated scopes joined by the entry's ``scope_separator``,
default a space; always sent), ``state``, the entry's interpolated ``authorization_params``,
``code_challenge`` and ``code_challenge_method=S256`` unless the entry sets ``disable_pkce``, and
last the request's own ``authorization_params`` (which win; ``None`` removes a parameter).
Every ``${connectionConfig.x}`` in the entry's URLs and parameters must resolve, or the flow
fails with ``url_param_err`` before anything is stored.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from freshtoken.providers.catalog import ProviderSpec, UrlTemplateError, render_url

_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
_PREFIXES = ("connectionConfig.", "credentials.")
# A request's authorization_params may add or replace provider parameters, never these: the
# redirect target, the state and the PKCE challenge are what make the flow safe (no open
# redirect, no injected state).
PROTECTED_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)


class MissingConnectionConfig(ValueError):
    """Some ``${connectionConfig.x}`` placeholders had no value; names keys only, never values."""

    def __init__(self, template: str, missing: list[str]) -> None:
        self.template = template
        self.missing = missing
        super().__init__(
            "Missing Connection Config param(s) in Auth request to interpolate url "
            f"{template}. Missing: {', '.join(missing)}"
        )


def new_code_verifier() -> str:
    """A PKCE code verifier: 64 URL-safe characters (RFC 7636 allows 43 to 128)."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """The S256 challenge: unpadded base64url of SHA-256 of the verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """An unguessable ``state`` (256 bits)."""
    return secrets.token_urlsafe(32)


def interpolate(value: str, connection_config: Mapping[str, Any]) -> str:
    """Fill ``${connectionConfig.x}`` (and ``${a || b}``) in a parameter value, unencoded.

    Raises :class:`MissingConnectionConfig` naming the keys that had no value.
    """
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        keys = [_strip(part.strip()) for part in match.group(1).split("||")]
        for key in keys:
            found = connection_config.get(key)
            if found is not None and found != "":
                return str(found)
        missing.append(" or ".join(keys))
        return match.group(0)

    out = _PLACEHOLDER.sub(substitute, value)
    if missing:
        raise MissingConnectionConfig(value, missing)
    return out


def _strip(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def render(template: str, connection_config: Mapping[str, Any]) -> str:
    """A catalog URL template rendered (values percent-encoded), or MissingConnectionConfig."""
    try:
        return render_url(template, connection_config)
    except UrlTemplateError as exc:
        raise MissingConnectionConfig(template, list(exc.missing_keys)) from None


def disables_pkce(spec: ProviderSpec) -> bool:
    """True when the catalog entry sets ``disable_pkce`` (Nango's flag)."""
    return bool(spec.raw.get("disable_pkce"))


def scope_value(spec: ProviderSpec, scopes: str | None) -> str:
    """The ``scope`` parameter: comma-separated scopes joined by the entry's separator."""
    separator = spec.raw.get("scope_separator")
    joiner = separator if isinstance(separator, str) and separator else " "
    parts = [s.strip() for s in (scopes or "").split(",") if s.strip()]
    return joiner.join(parts)


def check_templates(spec: ProviderSpec, connection_config: Mapping[str, Any]) -> None:
    """Raise MissingConnectionConfig unless every URL and parameter template resolves."""
    for template in (spec.authorization_url, spec.token_url):
        if template:
            render(template, connection_config)
    for params in (_catalog_authorization_params(spec), dict(spec.token_params)):
        for value in params.values():
            if isinstance(value, str):  # nested token_params are the grant's business
                interpolate(value, connection_config)


def _catalog_authorization_params(spec: ProviderSpec) -> dict[str, str]:
    raw = spec.raw.get("authorization_params")
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): str(v) for k, v in raw.items() if v is not None}


@dataclass(frozen=True)
class AuthorizationRequest:
    """Everything the authorization URL is made of."""

    spec: ProviderSpec
    client_id: str
    redirect_uri: str
    state: str
    scopes: str | None
    connection_config: Mapping[str, Any]
    code_verifier: str | None
    extra_params: Mapping[str, str | None]


def authorization_url(req: AuthorizationRequest) -> str:
    """The URL the browser is sent to (see the module docstring for the order)."""
    spec = req.spec
    if not spec.authorization_url:
        raise MissingConnectionConfig("authorization_url", ["authorization_url"])
    rendered = urllib.parse.urlsplit(render(spec.authorization_url, req.connection_config))
    query: dict[str, str] = {
        "response_type": "code",
        "client_id": req.client_id,
        "redirect_uri": req.redirect_uri,
        "scope": scope_value(spec, req.scopes),
        "state": req.state,
    }
    for key, value in _catalog_authorization_params(spec).items():
        query[key] = interpolate(value, req.connection_config)
    if req.code_verifier is not None:
        query["code_challenge"] = code_challenge(req.code_verifier)
        query["code_challenge_method"] = "S256"
    for key, extra in req.extra_params.items():
        if key in PROTECTED_PARAMS:
            continue
        if extra is None:
            query.pop(key, None)
        else:
            query[key] = extra
    base = urllib.parse.urlunsplit((rendered.scheme, rendered.netloc, rendered.path, "", ""))
    return base + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


def with_interpolated_token_params(
    spec: ProviderSpec, connection_config: Mapping[str, Any]
) -> ProviderSpec:
    """The spec with ``${connectionConfig.x}`` in its ``token_params`` filled (for the exchange)."""
    if not any(isinstance(v, str) and "${" in v for v in spec.token_params.values()):
        return spec
    filled = {
        k: interpolate(v, connection_config) if isinstance(v, str) else v
        for k, v in spec.token_params.items()
    }
    return dataclasses.replace(spec, token_params=MappingProxyType(filled))
