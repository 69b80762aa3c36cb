"""The outbound policy holds on every path a secret can leave by, not only the refresh grant.

Issue 10 asks for one policy on every request freshtoken makes. These paths were added later
(the async provider call, the connect flow's code exchange and client-credentials check, the
OAuth 1.0a legs) and each must refuse an internal address in production before anything is
sent: a MockTransport records what would have left the process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from tests.support import make_settings

from freshtoken.connect import oauth1
from freshtoken.outbound import OutboundPolicy
from freshtoken.providers.catalog import load_catalog
from freshtoken.refresh.grants import GrantError, GrantRequest, asend, prepare
from freshtoken.refresh.http import ProviderCallError, ProviderHttp, ProviderRequest
from freshtoken.settings import Settings

STRONG_KEY = "ft_sk_" + "Q7hR2mXk9pL4vN8tB3wZ6yC1dF5gJ0sA"
INTERNAL = "http://127.0.0.1:9/token"


def _production(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, env="production", secret_key=STRONG_KEY)


def _recording() -> tuple[list[httpx.Request], httpx.MockTransport, httpx.AsyncBaseTransport]:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"access_token": "x", "expires_in": 60})

    sync = httpx.MockTransport(handler)
    return sent, sync, httpx.MockTransport(handler)


def test_provider_http_refuses_internal_address_in_production(tmp_path: Path) -> None:
    """ProviderHttp.send checks the settings' policy itself: nothing is sent to 127.0.0.1."""
    sent, _, transport = _recording()
    http = ProviderHttp(_production(tmp_path), transport=transport)
    request = ProviderRequest(url=INTERNAL, headers={}, form={"refresh_token": "rt"})
    with pytest.raises(ProviderCallError, match="outbound_denied"):
        asyncio.run(http.send(request))
    assert sent == []


def test_provider_http_allows_loopback_in_development(tmp_path: Path) -> None:
    """Development allows private addresses (the mock provider listens on 127.0.0.1)."""
    sent, _, transport = _recording()
    http = ProviderHttp(make_settings(tmp_path), transport=transport)
    response = asyncio.run(http.send(ProviderRequest(url=INTERNAL, headers={}, form={"a": "b"})))
    assert response.status_code == 200
    assert len(sent) == 1


def test_permissive_grant_request_is_still_refused_in_production(tmp_path: Path) -> None:
    """A hand-built grant request without a policy (PERMISSIVE) cannot bypass production's rule:
    the refusal is a permanent ``outbound_denied`` failure and no secret leaves."""
    sent, _, transport = _recording()
    http = ProviderHttp(_production(tmp_path), transport=transport)
    spec = load_catalog().get("oauth2")
    assert spec is not None
    req = GrantRequest(spec=spec, connection_config={}, client_id="cid", client_secret="cs")
    token_request = prepare(req, INTERNAL, {"grant_type": "refresh_token", "refresh_token": "r"})
    with pytest.raises(GrantError) as failure:
        asyncio.run(asend(http, spec, token_request))
    assert failure.value.error_code == "outbound_denied"
    assert failure.value.permanent
    assert sent == []


def test_grant_request_for_settings_carries_the_production_policy(tmp_path: Path) -> None:
    """The connect flow's code exchange and client-credentials check build their requests from
    the settings: production's policy, the body cap and the provider deadline."""
    settings = _production(tmp_path)
    spec = load_catalog().get("oauth2")
    assert spec is not None
    req = GrantRequest.for_settings(settings, spec, {}, "cid", "cs")
    assert req.outbound == OutboundPolicy.from_settings(settings)
    assert not req.outbound.allow_private
    assert req.max_response_bytes == settings.provider_max_response_bytes
    assert req.deadline_seconds == settings.provider_deadline


def test_oauth1_legs_refuse_internal_address_in_production(tmp_path: Path) -> None:
    """Both OAuth 1.0a legs are signed with the consumer secret: refused before sending."""
    sent, transport, _ = _recording()
    policy = OutboundPolicy.from_settings(_production(tmp_path))
    with httpx.Client(transport=transport) as http:
        with pytest.raises(oauth1.OAuth1Error, match="outbound policy"):
            oauth1.request_token(http, INTERNAL, "ck", "cs", "https://x/cb", outbound=policy)
        with pytest.raises(oauth1.OAuth1Error, match="outbound policy"):
            oauth1.access_token(http, INTERNAL, "ck", "cs", "t", "ts", "v", outbound=policy)
    assert sent == []
