"""The mock provider's authorization-code endpoint: consent, PKCE S256, single-use bound codes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from freshtoken.mockauthorize import s256
from freshtoken.mockprovider import MockProvider

REDIRECT = "http://127.0.0.1:9/oauth/callback"
VERIFIER = "verifier-" + "x" * 50


@pytest.fixture(autouse=True)
def _quiet_httpx() -> Iterator[None]:
    """httpx logs every URL it requests; these carry codes."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def authorize(mock_provider: MockProvider, **overrides: Any) -> httpx.Response:
    """GET /authorize with a valid request, fields overridden (None drops one)."""
    params: dict[str, Any] = {
        "response_type": "code",
        "client_id": mock_provider.config.client_id,
        "redirect_uri": REDIRECT,
        "state": "s1",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return httpx.get(f"{mock_provider.url}/authorize?{query}", follow_redirects=False)


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query of the redirect back to the client."""
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def exchange(mock_provider: MockProvider, code: str, **overrides: Any) -> httpx.Response:
    """POST the authorization_code grant (client in the body)."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "client_id": mock_provider.config.client_id,
        "client_secret": mock_provider.config.client_secret,
    }
    body.update(overrides)
    return httpx.post(
        mock_provider.token_url, data={k: v for k, v in body.items() if v is not None}
    )


def test_code_flow_issues_a_refreshable_family(mock_provider: MockProvider) -> None:
    """Consent → code + state back; the exchange gives tokens; the refresh token works."""
    back = redirect_params(authorize(mock_provider))
    assert back["state"] == "s1" and back["code"].startswith("mock-code-")
    tokens = exchange(mock_provider, back["code"]).json()
    assert mock_provider.is_access_token_valid(tokens["access_token"])
    refreshed = httpx.post(
        mock_provider.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": mock_provider.config.client_id,
            "client_secret": mock_provider.config.client_secret,
        },
    )
    assert refreshed.status_code == 200


def test_codes_are_single_use_and_a_replay_revokes_the_tokens(mock_provider: MockProvider) -> None:
    """The second exchange of a code fails and kills what the first one issued (RFC 6749 4.1.2)."""
    code = redirect_params(authorize(mock_provider))["code"]
    tokens = exchange(mock_provider, code).json()
    again = exchange(mock_provider, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert not mock_provider.is_access_token_valid(tokens["access_token"])


@pytest.mark.parametrize(
    "override",
    [
        {"code_verifier": "wrong-" + "y" * 50},
        {"code_verifier": None},
        {"redirect_uri": "http://127.0.0.1:9/elsewhere"},
    ],
)
def test_exchange_checks_pkce_and_redirect_uri(
    mock_provider: MockProvider, override: dict[str, Any]
) -> None:
    """A wrong or missing verifier, or another redirect URI, is invalid_grant."""
    code = redirect_params(authorize(mock_provider))["code"]
    response = exchange(mock_provider, code, **override)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_exchange_needs_the_client(mock_provider: MockProvider) -> None:
    """A wrong client secret is invalid_client (and the code is not consumed by it)."""
    code = redirect_params(authorize(mock_provider))["code"]
    assert exchange(mock_provider, code, client_secret="nope").status_code == 401
    assert exchange(mock_provider, code).status_code == 200


def test_authorize_never_redirects_for_a_bad_client_or_redirect(
    mock_provider: MockProvider,
) -> None:
    """Unknown client or missing redirect URI: an error page, no redirect (no open redirect)."""
    assert authorize(mock_provider, client_id="other").status_code == 400
    assert authorize(mock_provider, redirect_uri=None).status_code == 400
    assert authorize(mock_provider, redirect_uri="javascript:alert(1)").status_code == 400


def test_authorize_errors_and_switches(mock_provider: MockProvider) -> None:
    """PKCE required; S256 only; deny, tampered state and corrupted challenge switches."""
    assert (
        redirect_params(authorize(mock_provider, code_challenge=None))["error"] == "invalid_request"
    )
    plain = authorize(mock_provider, code_challenge_method="plain")
    assert redirect_params(plain)["error"] == "invalid_request"
    mock_provider.configure(deny_consent=True)
    denied = redirect_params(authorize(mock_provider))
    assert denied["error"] == "access_denied" and denied["state"] == "s1"
    mock_provider.configure(deny_consent=False, tamper_state=True)
    assert redirect_params(authorize(mock_provider))["state"] != "s1"
    mock_provider.configure(tamper_state=False, corrupt_code_challenge=True)
    code = redirect_params(authorize(mock_provider))["code"]
    assert exchange(mock_provider, code).json()["error"] == "invalid_grant"
