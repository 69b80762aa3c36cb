"""Client-credentials requests built the way Nango's ``getOauthClientCredentials`` builds them
(packages/shared/lib/services/connection.service.ts): interpolated ``token_params``,
``scope_separator``, ``authorization_params``, ``body_format: query``, ``custom`` and
``private_key_jwt`` client authentication. Requests are captured with httpx's MockTransport."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from tests.authmode_helpers import app_key

from freshtoken.providers.catalog import ProviderSpec, parse_catalog_file
from freshtoken.refresh.authmodes.jws import b64url, unverified_claims
from freshtoken.refresh.grants import GrantRequest, client_credentials

CATALOG = """
auth0-like:
    auth_mode: OAUTH2_CC
    token_url: https://${connectionConfig.subdomain}.auth0.test/oauth/token
    body_format: json
    token_params:
        grant_type: client_credentials
        audience: ${connectionConfig.audience} || https://api.default.test
        organization: ${connectionConfig.organization}
    scope_separator: ','
query-like:
    auth_mode: OAUTH2_CC
    token_url: https://kno.test/token
    body_format: query
    token_request_auth_method: basic
custom-like:
    auth_mode: OAUTH2_CC
    token_url: https://zoominfo.test/token
    token_request_auth_method: custom
jwt-like:
    auth_mode: OAUTH2_CC
    token_url: https://${connectionConfig.hostname}/oauth2/v1/token || https://${connectionConfig.subdomain}.okta.test/oauth2/v1/token
    token_request_auth_method: private_key_jwt
"""
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def specs(tmp_path: Path) -> dict[str, ProviderSpec]:
    """The test entries, loaded by the catalog loader."""
    path = tmp_path / "providers.yaml"
    path.write_text(CATALOG, encoding="utf-8")
    loaded, skipped = parse_catalog_file(str(path))
    assert skipped == []
    return {s.name: s for s in loaded}


def _run(spec: ProviderSpec, config: dict[str, Any], creds: dict[str, Any]) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "at", "expires_in": 60})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        req = GrantRequest(spec, config, creds.get("client_id"), creds.get("client_secret"))
        result = client_credentials(http, req, creds, sent_at=NOW, default_lifetime=3300)
    assert result["token"] == "at"
    (request,) = seen
    return request


CREDS = {"type": "OAUTH2_CC", "token": "old", "client_id": "cid", "client_secret": "csec"}


def test_token_params_are_filled_and_unresolved_ones_left_out(
    specs: dict[str, ProviderSpec],
) -> None:
    """Placeholders come from connection_config; `A || B` falls back; scopes use the separator."""
    request = _run(specs["auth0-like"], {"subdomain": "acme", "oauth_scopes": "read,write"}, CREDS)
    assert str(request.url) == "https://acme.auth0.test/oauth/token"
    assert json.loads(request.content) == {
        "grant_type": "client_credentials",
        "audience": "https://api.default.test",
        "scope": "read,write",
        "client_id": "cid",
        "client_secret": "csec",
    }
    configured = _run(
        specs["auth0-like"],
        {"subdomain": "acme", "audience": "urn:acme", "authorization_params": {"scope": "x"}},
        CREDS,
    )
    body = json.loads(configured.content)
    assert body["audience"] == "urn:acme" and body["scope"] == "x"


def test_query_body_format_sends_parameters_in_the_url(specs: dict[str, ProviderSpec]) -> None:
    """body_format: query: everything in the query string, nothing in the body."""
    request = _run(specs["query-like"], {}, CREDS)
    assert request.content == b""
    assert dict(urllib.parse.parse_qsl(request.url.query.decode())) == {
        "grant_type": "client_credentials"
    }
    assert request.headers["Authorization"].startswith("Basic ")


def test_custom_client_auth_sends_username_and_password(specs: dict[str, ProviderSpec]) -> None:
    """token_request_auth_method: custom -> username/password fields, no client_secret."""
    request = _run(specs["custom-like"], {}, CREDS)
    form = dict(urllib.parse.parse_qsl(request.content.decode()))
    assert form == {"grant_type": "client_credentials", "username": "cid", "password": "csec"}


def _jwk() -> str:
    numbers = app_key().private_numbers()

    def enc(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return json.dumps(
        {
            "kty": "RSA",
            "kid": "key-1",
            "n": enc(numbers.public_numbers.n),
            "e": enc(numbers.public_numbers.e),
            "d": enc(numbers.d),
            "p": enc(numbers.p),
            "q": enc(numbers.q),
            "dp": enc(numbers.dmp1),
            "dq": enc(numbers.dmq1),
            "qi": enc(numbers.iqmp),
        }
    )


def test_private_key_jwt_signs_a_client_assertion(specs: dict[str, ProviderSpec]) -> None:
    """private_key_jwt: RS256 assertion: kid, iss=sub=client_id, aud=token URL, 300 s."""
    creds = {**CREDS, "client_private_key": _jwk()}
    request = _run(specs["jwt-like"], {"subdomain": "acme"}, creds)
    assert str(request.url) == "https://acme.okta.test/oauth2/v1/token"
    form = dict(urllib.parse.parse_qsl(request.content.decode()))
    assert "client_secret" not in form
    assert form["client_id"] == "cid"
    assert form["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    head, payload, signature = form["client_assertion"].split(".")
    app_key().public_key().verify(
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        f"{head}.{payload}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    assert header["kid"] == "key-1" and header["alg"] == "RS256"
    claims = unverified_claims(form["client_assertion"])
    assert claims is not None
    assert claims["iss"] == claims["sub"] == "cid"
    assert claims["aud"] == "https://acme.okta.test/oauth2/v1/token"
    assert claims["exp"] - claims["iat"] == 300


def test_private_key_jwt_without_a_key_is_permanent(specs: dict[str, ProviderSpec]) -> None:
    """No client_private_key: a permanent failure, before any request."""
    from freshtoken.refresh.grants import GrantError

    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))) as http:
        req = GrantRequest(specs["jwt-like"], {"subdomain": "a"}, "cid", "csec")
        with pytest.raises(GrantError) as excinfo:
            client_credentials(http, req, CREDS, sent_at=NOW, default_lifetime=60)
    assert excinfo.value.permanent
    assert excinfo.value.error_code == "missing_client_private_key"
