"""APP and CUSTOM (GitHub App) connections: import, refresh through the core, and the read flag.

Real HTTP against the in-process mock provider, whose installation-token endpoint verifies the
RS256 app JWT against the registered public key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from sqlalchemy import select
from structlog.testing import capture_logs
from tests.authmode_helpers import (
    APP_ID,
    INSTALLATION_ID,
    app_key,
    private_key_pem,
    public_key_pem,
    write_providers_file,
)
from tests.support import SECRET_KEY, make_runtime, make_settings

from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.refresh.authmodes.jws import b64url, unverified_claims
from freshtoken.runtime import Runtime
from freshtoken.store.models import Integration

PCK = "gh"


@pytest.fixture
def clock() -> FakeClock:
    """The clock of freshtoken and of the mock's JWT checks alike."""
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def github_app_provider(clock: FakeClock) -> Iterator[MockProvider]:
    """The mock provider with one GitHub App and its installation registered."""
    with MockProvider() as mock:
        mock.authmodes.register_app(APP_ID, public_key_pem(), INSTALLATION_ID)
        mock.authmodes.clock = lambda: clock.now().timestamp()
        yield mock


@pytest.fixture
def live(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Runtime, TestClient]]:
    """A runtime with the refresh engine and the auth-mode providers file; an API client."""
    settings = make_settings(tmp_path, providers_file=write_providers_file(tmp_path))
    rt = make_runtime(settings, clock=clock)
    with TestClient(create_app(rt), headers={"Authorization": f"Bearer {SECRET_KEY}"}) as client:
        yield rt, client
    rt.close()


def _integration(client: TestClient, provider_name: str = "mock-github-app", **extra: str) -> None:
    credentials: dict[str, Any] = {
        "type": "APP",
        "app_id": APP_ID,
        "app_link": "https://github.com/apps/freshtoken-test",
        "private_key": private_key_pem(),
        **extra,
    }
    if provider_name == "mock-github-app-oauth":
        credentials.update(type="CUSTOM", client_id="cid", client_secret="csecret")
    response = client.post(
        "/integrations",
        json={"provider": provider_name, "unique_key": PCK, "credentials": credentials},
    )
    assert response.status_code == 200, response.text


def _import(client: TestClient, github_app_provider: MockProvider, kind: str = "APP") -> Any:
    return client.post(
        "/connections",
        json={
            "provider_config_key": PCK,
            "connection_id": "inst-1",
            "connection_config": {"api_base": github_app_provider.url},
            "credentials": {"type": kind, "app_id": APP_ID, "installation_id": INSTALLATION_ID},
        },
    )


def _verify_jwt(token: str) -> dict[str, Any]:
    head, payload, signature = token.split(".")
    pad = "=" * (-len(signature) % 4)
    import base64

    app_key().public_key().verify(
        base64.urlsafe_b64decode(signature + pad),
        f"{head}.{payload}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    claims = unverified_claims(token)
    assert claims is not None
    return claims


def test_app_integration_stores_the_private_key_encrypted_and_reads_back_nangos_shape(
    live: tuple[Runtime, TestClient],
) -> None:
    """POST /integrations APP keeps app_id/app_link/private_key; the key is never stored plain."""
    rt, client = live
    _integration(client)
    body = client.get(f"/integrations/{PCK}", params={"include": "credentials"}).json()
    assert body["data"]["credentials"] == {
        "type": "APP",
        "app_id": APP_ID,
        "app_link": "https://github.com/apps/freshtoken-test",
        "private_key": private_key_pem(),
    }
    with rt.session_factory() as session:
        row = session.scalars(select(Integration)).one()
        assert row.custom_enc is not None
        assert "PRIVATE KEY" not in row.custom_enc
        assert APP_ID not in row.custom_enc


def test_app_import_mints_an_installation_token_through_the_core(
    live: tuple[Runtime, TestClient], github_app_provider: MockProvider
) -> None:
    """POST /connections APP {app_id, installation_id} answers 201 with a minted token."""
    _, client = live
    _integration(client)
    with capture_logs() as logs:
        response = _import(client, github_app_provider)
    assert response.status_code == 201, response.text
    creds = response.json()["credentials"]
    assert set(creds) == {"type", "access_token", "expires_at", "raw", "jwtToken"}
    assert creds["type"] == "APP"
    assert github_app_provider.authmodes.is_token_valid(creds["access_token"])
    assert creds["raw"]["token"] == creds["access_token"]
    claims = _verify_jwt(creds["jwtToken"])
    assert claims["iss"] == APP_ID and claims["exp"] - claims["iat"] <= 600
    assert response.json()["connection_config"]["installation_id"] == INSTALLATION_ID
    (event,) = [e for e in logs if e["event"] == "token.refresh"]
    assert (event["outcome"], event["trigger"]) == ("success", "manual")
    assert github_app_provider.authmodes.stats()["installation_token_calls"] == 1


def test_expired_app_token_is_refreshed_on_read_and_forced_refresh_mints_again(
    live: tuple[Runtime, TestClient], github_app_provider: MockProvider
) -> None:
    """A read near the hour's end gets a new installation token; force_refresh always does."""
    rt, client = live
    _integration(client)
    first = _import(client, github_app_provider).json()["credentials"]["access_token"]
    fresh = client.get("/connections/inst-1", params={"provider_config_key": PCK}).json()
    assert fresh["credentials"]["access_token"] == first  # an hour left: served as stored
    assert isinstance(rt.clock, FakeClock)
    rt.clock.advance(3600 - 60)  # one minute left: inside the read margin
    with capture_logs() as logs:
        second = client.get("/connections/inst-1", params={"provider_config_key": PCK}).json()
    assert second["credentials"]["access_token"] != first
    assert [e["trigger"] for e in logs if e["event"] == "token.refresh"] == ["on_read"]
    forced = client.get(
        "/connections/inst-1", params={"provider_config_key": PCK, "force_refresh": "true"}
    ).json()
    assert forced["credentials"]["access_token"] not in (
        first,
        second["credentials"]["access_token"],
    )
    assert github_app_provider.authmodes.stats()["installation_token_calls"] == 3


def test_wrong_private_key_is_a_permanent_failure_without_leaking_the_key(
    live: tuple[Runtime, TestClient], github_app_provider: MockProvider
) -> None:
    """A JWT the provider cannot verify: import answers 500, the log says invalid_client."""
    _, client = live
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client.post(
        "/integrations",
        json={
            "provider": "mock-github-app",
            "unique_key": PCK,
            "credentials": {
                "type": "APP",
                "app_id": APP_ID,
                "app_link": "https://github.com/apps/x",
                "private_key": private_key_pem(other),
            },
        },
    )
    with capture_logs() as logs:
        response = _import(client, github_app_provider)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    (event,) = [e for e in logs if e["event"] == "token.refresh"]
    assert (event["error_class"], event["error_code"]) == ("permanent", "invalid_client")
    assert github_app_provider.authmodes.stats()["jwt_rejected"] == 1
    assert "PRIVATE KEY" not in repr(logs) and "PRIVATE KEY" not in response.text


def test_refresh_github_app_jwt_token_returns_a_newly_minted_app_jwt(
    live: tuple[Runtime, TestClient], github_app_provider: MockProvider
) -> None:
    """refresh_github_app_jwt_token=true: a new verifiable app JWT, no provider call (as Nango)."""
    rt, client = live
    _integration(client)
    imported = _import(client, github_app_provider).json()["credentials"]
    assert isinstance(rt.clock, FakeClock)
    rt.clock.advance(120)
    body = client.get(
        "/connections/inst-1",
        params={"provider_config_key": PCK, "refresh_github_app_jwt_token": "true"},
    ).json()
    creds = body["credentials"]
    assert creds["access_token"] == imported["access_token"]
    assert creds["jwtToken"] != imported["jwtToken"]
    assert _verify_jwt(creds["jwtToken"])["iat"] > _verify_jwt(imported["jwtToken"])["iat"]
    assert github_app_provider.authmodes.stats()["installation_token_calls"] == 1
    plain = client.get("/connections/inst-1", params={"provider_config_key": PCK}).json()
    assert plain["credentials"]["jwtToken"] == imported["jwtToken"]


def test_custom_import_has_an_app_part_and_no_user(
    live: tuple[Runtime, TestClient], github_app_provider: MockProvider
) -> None:
    """CUSTOM (GitHub App OAuth) reads back as Nango's {type, app, user, raw}."""
    _, client = live
    _integration(client, "mock-github-app-oauth")
    response = _import(client, github_app_provider, "CUSTOM")
    assert response.status_code == 201, response.text
    creds = response.json()["credentials"]
    assert set(creds) == {"type", "app", "user", "raw"}
    assert creds["type"] == "CUSTOM" and creds["user"] is None
    assert creds["app"]["type"] == "APP"
    assert github_app_provider.authmodes.is_token_valid(creds["app"]["access_token"])
    assert creds["raw"] == creds["app"]


def test_jws_helper_signs_what_cryptography_verifies() -> None:
    """The hand-rolled RS256 JWS verifies with the public key (guards the mock's checks too)."""
    from freshtoken.refresh.authmodes.jws import sign

    token = sign({"iss": "1", "iat": 1, "exp": 2}, app_key(), "RS256")
    assert _verify_jwt(token)["iss"] == "1"
    assert token.split(".")[0] == b64url(b'{"alg":"RS256","typ":"JWT"}')


def _custom_context(
    rt: Runtime, github_app_provider: MockProvider, user: dict[str, Any] | None
) -> Any:
    from freshtoken.refresh.authmodes.context import AuthModeContext

    spec = rt.catalog.get("mock-github-app-oauth")
    assert spec is not None
    service = rt.require_refresh_service()
    return AuthModeContext(
        http=service.http,
        spec=spec,
        connection_config={"api_base": github_app_provider.url, "installation_id": INSTALLATION_ID},
        credentials={"type": "CUSTOM", "app": None, "user": user, "raw": {}},
        sent_at=rt.clock.now(),
        default_lifetime=3600.0,
        client_id=github_app_provider.config.client_id,
        client_secret=github_app_provider.config.client_secret,
        integration_custom={"app_id": APP_ID, "private_key": private_key_pem()},
    )


def test_custom_refreshes_the_user_part_and_keeps_it_on_a_provider_hiccup(
    live: tuple[Runtime, TestClient], github_app_provider: MockProvider
) -> None:
    """CUSTOM: the user's rotating refresh token is spent once; a 503 keeps the old user part."""
    from freshtoken.refresh.authmodes.github_app import refresh_custom

    rt, _ = live
    family = github_app_provider.seed()
    user = {
        "type": "OAUTH2",
        "access_token": family["access_token"],
        "refresh_token": family["refresh_token"],
        "raw": {},
    }
    creds, rotated = refresh_custom(_custom_context(rt, github_app_provider, user))
    assert rotated
    assert github_app_provider.is_access_token_valid(creds["user"]["access_token"])
    assert creds["user"]["refresh_token"] != family["refresh_token"]
    assert github_app_provider.authmodes.is_token_valid(creds["app"]["access_token"])
    github_app_provider.inject("503")
    kept, rotated_again = refresh_custom(_custom_context(rt, github_app_provider, creds["user"]))
    assert not rotated_again
    assert kept["user"] == creds["user"]
    assert github_app_provider.authmodes.is_token_valid(kept["app"]["access_token"])
    # Each refresh token was presented once (the second one to the failing call).
    assert github_app_provider.stats()["calls_by_refresh_token"] == {
        family["refresh_token"]: 1,
        creds["user"]["refresh_token"]: 1,
    }


def test_unknown_installation_is_permanent(
    live: tuple[Runtime, TestClient], github_app_provider: MockProvider
) -> None:
    """GitHub's 404 for an uninstalled app is permanent (installation_not_found), not retried."""
    _, client = live
    _integration(client)
    response = client.post(
        "/connections",
        json={
            "provider_config_key": PCK,
            "connection_id": "gone",
            "connection_config": {"api_base": github_app_provider.url},
            "credentials": {"type": "APP", "app_id": APP_ID, "installation_id": "999"},
        },
    )
    assert response.status_code == 500
    assert "installation_not_found" in response.json()["error"]["message"]
