"""Connections of every Nango auth mode: imported and read back with Nango's credential shapes,
and (JWT, TWO_STEP, BILL, SIGNATURE) refreshed through the refresh core against the mock.

Shapes per ``packages/types/lib/auth/api.ts`` (see ../shared reference, "Credential shapes").
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs
from tests.authmode_helpers import write_providers_file
from tests.support import SECRET_KEY, make_runtime, make_settings

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.mockprovider import MockProvider
from freshtoken.refresh.authmodes.jws import unverified_claims
from freshtoken.runtime import Runtime, build_runtime

HEADERS = {"Authorization": f"Bearer {SECRET_KEY}"}


@pytest.fixture
def clock() -> FakeClock:
    """freshtoken's clock, shared with the mock's token lifetimes."""
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def authmode_provider(clock: FakeClock) -> Iterator[MockProvider]:
    """The mock provider with a TWO_STEP/BILL user registered."""
    with MockProvider() as mock:
        mock.authmodes.register_user("ada", "pw-1")
        mock.authmodes.clock = lambda: clock.now().timestamp()
        yield mock


@pytest.fixture
def stored(tmp_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    """An API serving stored credentials as they are (no refresher), auth-mode catalog loaded."""
    settings = make_settings(tmp_path, providers_file=write_providers_file(tmp_path))
    rt = build_runtime(settings, clock=clock, with_refresher=False)
    migrate.upgrade(rt.engine)
    with TestClient(create_app(rt), headers=HEADERS) as client:
        yield client
    rt.close()


@pytest.fixture
def live(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Runtime, TestClient]]:
    """The same with the refresh engine attached."""
    settings = make_settings(tmp_path, providers_file=write_providers_file(tmp_path))
    rt = make_runtime(settings, clock=clock)
    with TestClient(create_app(rt), headers=HEADERS) as client:
        yield rt, client
    rt.close()


def _integration(client: TestClient, provider_name: str, key: str) -> None:
    response = client.post("/integrations", json={"provider": provider_name, "unique_key": key})
    assert response.status_code == 200, response.text


def _import(
    client: TestClient, key: str, credentials: dict[str, Any], config: dict[str, Any] | None = None
) -> Any:
    return client.post(
        "/connections",
        json={
            "provider_config_key": key,
            "connection_id": "c1",
            "credentials": credentials,
            "connection_config": config or {},
        },
    )


def _read(client: TestClient, key: str, **params: str) -> Any:
    return client.get("/connections/c1", params={"provider_config_key": key, **params})


@pytest.mark.parametrize(
    ("provider_name", "credentials", "config", "expected"),
    [
        (
            "mock-tba",
            {"type": "TBA", "token_id": "tid", "token_secret": "tsec"},
            {"accountId": "123"},
            {"type": "TBA", "token_id": "tid", "token_secret": "tsec"},
        ),
        (
            "mock-tba",
            {
                "type": "TBA",
                "token_id": "tid",
                "token_secret": "tsec",
                "config_override": {"client_id": "a", "client_secret": "b"},
            },
            {"accountId": "123"},
            {
                "type": "TBA",
                "token_id": "tid",
                "token_secret": "tsec",
                "config_override": {"client_id": "a", "client_secret": "b"},
            },
        ),
        ("mock-none", {"type": "NONE"}, None, {}),
        (
            "mock-jwt",
            {
                "type": "JWT",
                "token": "t-1",
                "expires_at": "2099-01-01T00:00:00.000Z",
                "issuer": "iss-1",
                "secret": "00ff",
            },
            None,
            {
                "type": "JWT",
                "token": "t-1",
                "expires_at": "2099-01-01T00:00:00.000Z",
                "issuer": "iss-1",
                "secret": "00ff",
                "raw": {},
            },
        ),
        (
            "mock-two-step",
            {
                "type": "TWO_STEP",
                "token": "ts-1",
                "expires_at": "2099-01-01T00:00:00.000Z",
                "username": "ada",
                "password": "pw-1",
                "raw": {"token": "ts-1"},
            },
            None,
            {
                "type": "TWO_STEP",
                "token": "ts-1",
                "expires_at": "2099-01-01T00:00:00.000Z",
                "username": "ada",
                "password": "pw-1",
                "raw": {"token": "ts-1"},
            },
        ),
        (
            "mock-bill",
            {
                "type": "BILL",
                "username": "ada",
                "password": "pw-1",
                "organization_id": "org-1",
                "dev_key": "dk-1",
                "session_id": "s-1",
                "expires_at": "2099-01-01T00:00:00.000Z",
            },
            None,
            {
                "type": "BILL",
                "username": "ada",
                "password": "pw-1",
                "organization_id": "org-1",
                "dev_key": "dk-1",
                "session_id": "s-1",
                "expires_at": "2099-01-01T00:00:00.000Z",
            },
        ),
        (
            "mock-signature",
            {"type": "SIGNATURE", "username": "ada", "password": "pw-1"},
            None,
            {"type": "SIGNATURE", "username": "ada", "password": "pw-1"},
        ),
    ],
)
def test_import_and_read_back_nangos_shape(
    stored: TestClient,
    provider_name: str,
    credentials: dict[str, Any],
    config: dict[str, Any] | None,
    expected: dict[str, Any],
) -> None:
    """POST /connections then GET returns the credentials in Nango's shape for the type."""
    _integration(stored, provider_name, "k")
    created = _import(stored, "k", credentials, config)
    assert created.status_code == 201, created.text
    assert created.json()["credentials"] == expected
    read = _read(stored, "k")
    assert read.status_code == 200
    assert read.json()["credentials"] == expected


def test_tba_without_account_id_is_rejected_as_nango_does(stored: TestClient) -> None:
    """TBA needs connection_config.accountId: 400 invalid_body otherwise."""
    _integration(stored, "mock-tba", "k")
    response = _import(stored, "k", {"type": "TBA", "token_id": "a", "token_secret": "b"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"


def test_credentials_type_must_match_the_providers_auth_mode(stored: TestClient) -> None:
    """A NONE import into a TBA integration is 400 invalid_body (Nango's rule)."""
    _integration(stored, "mock-tba", "k")
    response = _import(stored, "k", {"type": "NONE"}, {"accountId": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"


def test_unknown_type_is_still_rejected(stored: TestClient) -> None:
    """A type outside Nango's enum is a 400 validation error."""
    _integration(stored, "mock-none", "k")
    response = _import(stored, "k", {"type": "MAGIC"})
    assert response.status_code == 400


# -- refresh through the core -------------------------------------------------------------------


def _refresh_events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "token.refresh"]


def test_two_step_logs_in_then_refreshes_with_a_rotating_refresh_token(
    live: tuple[Runtime, TestClient], authmode_provider: MockProvider, clock: FakeClock
) -> None:
    """TWO_STEP: the first read logs in; a later one spends the refresh token exactly once."""
    _, client = live
    authmode_provider.authmodes.two_step_token_lifetime_seconds = 600
    _integration(client, "mock-two-step", "k")
    created = _import(
        client,
        "k",
        {"type": "TWO_STEP", "username": "ada", "password": "pw-1"},
        {"api_base": authmode_provider.url},
    )
    assert created.status_code == 201, created.text
    with capture_logs() as logs:
        first = _read(client, "k", refresh_token="true").json()["credentials"]
    assert authmode_provider.authmodes.is_token_valid(first["token"])
    assert first["username"] == "ada" and first["refresh_token"].startswith("tsr-")
    clock.advance(560)  # inside the read margin of a 10-minute token
    with capture_logs() as more:
        second = _read(client, "k", refresh_token="true").json()["credentials"]
    assert second["token"] != first["token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["password"] == "pw-1"
    events = _refresh_events(logs) + _refresh_events(more)
    assert [(e["outcome"], e["rotated_refresh_token"]) for e in events] == [
        ("success", True),
        ("success", True),
    ]
    stats = authmode_provider.authmodes.stats()
    assert stats["two_step_calls"] == 2 and stats["two_step_refresh_reused"] == 0
    # Without refresh_token=true the refresh token is stripped, as for OAUTH2.
    plain = _read(client, "k").json()["credentials"]
    assert "refresh_token" not in plain


def test_two_step_bad_password_is_permanent(
    live: tuple[Runtime, TestClient], authmode_provider: MockProvider
) -> None:
    """A refused login marks the connection as needing re-authorisation (400 on read)."""
    _, client = live
    _integration(client, "mock-two-step", "k")
    _import(
        client,
        "k",
        {"type": "TWO_STEP", "username": "ada", "password": "no"},
        {"api_base": authmode_provider.url},
    )
    with capture_logs() as logs:
        response = _read(client, "k")
    assert response.status_code == 400
    (event,) = _refresh_events(logs)
    assert event["error_class"] == "permanent"


def test_bill_session_is_renewed(
    live: tuple[Runtime, TestClient], authmode_provider: MockProvider, clock: FakeClock
) -> None:
    """BILL: an expired session is replaced by logging in again (35-minute sessions)."""
    _, client = live
    _integration(client, "mock-bill", "k")
    created = _import(
        client,
        "k",
        {
            "type": "BILL",
            "username": "ada",
            "password": "pw-1",
            "organization_id": "org-1",
            "dev_key": "dk-1",
            "session_id": "old",
            "expires_at": (clock.now() - dt.timedelta(seconds=5)).isoformat(),
        },
        {"api_base": authmode_provider.url},
    )
    assert created.status_code == 201, created.text
    creds = _read(client, "k").json()["credentials"]
    assert creds["session_id"] != "old" and authmode_provider.authmodes.is_token_valid(
        creds["session_id"]
    )
    expires = dt.datetime.fromisoformat(creds["expires_at"].replace("Z", "+00:00"))
    assert expires - clock.now() == dt.timedelta(minutes=35)


def test_jwt_is_minted_from_the_entry_template(live: tuple[Runtime, TestClient]) -> None:
    """JWT: HS256 over the entry's payload, key from the credentials, 5-minute lifetime."""
    _, client = live
    _integration(client, "mock-jwt", "k")
    _import(client, "k", {"type": "JWT", "issuer": "iss-1", "secret": "00ff10"})
    creds = _read(client, "k").json()["credentials"]
    head, payload, signature = creds["token"].split(".")
    expected = hmac.new(bytes.fromhex("00ff10"), f"{head}.{payload}".encode(), hashlib.sha256)
    assert base64.urlsafe_b64encode(expected.digest()).rstrip(b"=").decode() == signature
    claims = unverified_claims(creds["token"])
    assert claims is not None
    assert claims["iss"] == "iss-1" and claims["exp"] - claims["iat"] == 300
    assert creds["issuer"] == "iss-1"


def test_signature_wsse_token_digest(live: tuple[Runtime, TestClient]) -> None:
    """SIGNATURE: a WSSE UsernameToken whose digest is base64(sha1hex(nonce+created+password))."""
    _, client = live
    _integration(client, "mock-signature", "k")
    _import(client, "k", {"type": "SIGNATURE", "username": "ada", "password": "pw-1"})
    creds = _read(client, "k").json()["credentials"]
    token = creds["token"]
    fields = dict(part.split("=", 1) for part in token.removeprefix("UsernameToken ").split(", "))
    fields = {k: v.strip('"') for k, v in fields.items()}
    digest = hashlib.sha1((fields["Nonce"] + fields["Created"] + "pw-1").encode()).hexdigest()  # noqa: S324
    assert fields["PasswordDigest"] == base64.b64encode(digest.encode()).decode()
    assert fields["Username"] == "ada"


@pytest.mark.parametrize(
    ("provider_name", "credentials", "config", "scheduled"),
    [
        ("mock-jwt", {"type": "JWT", "issuer": "i", "secret": "00"}, None, True),
        ("mock-two-step", {"type": "TWO_STEP", "username": "a", "password": "b"}, None, True),
        ("mock-signature", {"type": "SIGNATURE", "username": "a", "password": "b"}, None, True),
        (
            "mock-bill",
            {
                "type": "BILL",
                "username": "a",
                "password": "b",
                "organization_id": "o",
                "dev_key": "d",
            },
            None,
            True,
        ),
        (
            "mock-tba",
            {"type": "TBA", "token_id": "a", "token_secret": "b"},
            {"accountId": "1"},
            False,
        ),
        ("mock-none", {"type": "NONE"}, None, False),
    ],
)
def test_refreshable_modes_are_planned_for_the_proactive_scan(
    stored: TestClient,
    tmp_path: Path,
    provider_name: str,
    credentials: dict[str, Any],
    config: dict[str, Any] | None,
    scheduled: bool,
) -> None:
    """Imported JWT/TWO_STEP/SIGNATURE/BILL rows get a next_refresh_at; TBA and NONE do not."""
    from sqlalchemy import create_engine, text

    _integration(stored, provider_name, "k")
    assert _import(stored, "k", credentials, config).status_code == 201
    engine = create_engine(f"sqlite:///{tmp_path.as_posix()}/test.db")
    with engine.connect() as conn:
        planned = conn.execute(text("SELECT next_refresh_at FROM connections")).scalar_one()
    engine.dispose()
    assert (planned is not None) is scheduled
