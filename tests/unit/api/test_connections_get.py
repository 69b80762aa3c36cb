"""GET /connection(s)/{connectionId}: the credentials read path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from freshtoken.clock import FakeClock
from freshtoken.refresh.seam import RefreshDenied, Refusal
from freshtoken.runtime import Runtime
from freshtoken.store.credentials import iso
from freshtoken.store.models import Connection

IntegrationFactory = Callable[..., str]
Importer = Callable[..., dict[str, Any]]

PCK = "oauth2-test"
FULL_KEYS = {
    "id",
    "connection_id",
    "provider_config_key",
    "provider",
    "errors",
    "end_user",
    "tags",
    "metadata",
    "connection_config",
    "webhook_url_override",
    "created_at",
    "updated_at",
    "last_fetched_at",
    "credentials",
}
CONFIG_WITH_REFRESH = {
    "region": "eu",
    "refreshToken": "cfg-rt-1",
    "nested": {"Refresh-Token": "cfg-rt-2", "keep": True},
}


@pytest.fixture
def oauth2(make_integration: IntegrationFactory, import_connection: Importer) -> dict[str, Any]:
    """An OAUTH2 connection ``c1`` with refresh tokens in credentials, raw and config."""
    make_integration()
    return import_connection(
        "c1",
        credentials={
            "type": "OAUTH2",
            "access_token": "at-1",
            "refresh_token": "rt-1",
            "expires_at": "2030-01-01T00:00:00Z",
            "raw": {"access_token": "at-1", "refresh_token": "rt-1", "scope": "read"},
        },
        connection_config=CONFIG_WITH_REFRESH,
        metadata={"m": 1},
        tags={"team": "a"},
    )


def _get(client: TestClient, cid: str = "c1", **params: str) -> Any:
    return client.get(
        f"/connections/{quote(cid, safe='')}", params={"provider_config_key": PCK, **params}
    )


@pytest.mark.usefixtures("oauth2")
def test_get_returns_public_connection_without_refresh_tokens(
    client: TestClient, clock: FakeClock
) -> None:
    """By default the response has every public field and no refresh token anywhere."""
    response = _get(client)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == FULL_KEYS
    assert body["connection_id"] == "c1"
    assert body["provider_config_key"] == PCK
    assert body["provider"] == "oauth2"
    assert body["errors"] == []
    assert body["tags"] == {"team": "a"}
    assert body["metadata"] == {"m": 1}
    assert body["credentials"] == {
        "type": "OAUTH2",
        "access_token": "at-1",
        "expires_at": "2030-01-01T00:00:00.000Z",
        "raw": {"access_token": "at-1", "scope": "read"},
    }
    assert body["connection_config"] == {"region": "eu", "nested": {"keep": True}}
    assert "rt-1" not in response.text
    assert "cfg-rt" not in response.text
    assert body["created_at"] == iso(clock.now())
    assert body["last_fetched_at"] == iso(clock.now())


@pytest.mark.usefixtures("oauth2")
def test_refresh_token_true_keeps_refresh_tokens(client: TestClient) -> None:
    """refresh_token=true returns the refresh token in credentials, raw and connection_config."""
    body = _get(client, refresh_token="true").json()
    assert body["credentials"]["refresh_token"] == "rt-1"
    assert body["credentials"]["raw"]["refresh_token"] == "rt-1"
    assert body["connection_config"] == CONFIG_WITH_REFRESH


@pytest.mark.usefixtures("oauth2")
def test_legacy_path_serves_the_same_connection(client: TestClient) -> None:
    """GET /connection/{id} (deprecated spelling) answers like /connections/{id}."""
    legacy = client.get("/connection/c1", params={"provider_config_key": PCK})
    assert legacy.status_code == 200
    assert legacy.json()["credentials"] == _get(client).json()["credentials"]


@pytest.mark.usefixtures("oauth2")
def test_read_sets_last_fetched_at(runtime: Runtime, client: TestClient, clock: FakeClock) -> None:
    """Every read stamps last_fetched_at with the current time, in the response and the row."""
    clock.advance(120)
    first = _get(client).json()
    assert first["last_fetched_at"] == iso(clock.now())
    clock.advance(60)
    second = _get(client).json()
    assert second["last_fetched_at"] == iso(clock.now())
    # The stamp is written behind the read (FetchStamps), within one flush interval.
    assert runtime.fetch_stamps.flush() == 1
    with runtime.store() as store:
        row = store.get_connection(PCK, "c1")
        assert row is not None
        assert row.last_fetched_at == clock.now()


def test_import_response_has_no_last_fetched_at(
    make_integration: IntegrationFactory, import_connection: Importer
) -> None:
    """A connection never read has last_fetched_at null."""
    make_integration()
    assert import_connection("c1")["last_fetched_at"] is None


@pytest.mark.usefixtures("oauth2")
def test_unknown_integration_is_400_unknown_provider_config(client: TestClient) -> None:
    """An unknown provider_config_key answers 400 unknown_provider_config (Nango's text)."""
    response = client.get("/connections/c1", params={"provider_config_key": "nope"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "unknown_provider_config",
        "message": "Provider does not exist",
    }


@pytest.mark.usefixtures("oauth2")
def test_unknown_connection_is_404_not_found(client: TestClient) -> None:
    """An unknown connection id answers 404 not_found "Failed to find connection"."""
    response = _get(client, "missing")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "Failed to find connection"}


@pytest.mark.usefixtures("oauth2")
def test_deleted_connection_is_404(client: TestClient) -> None:
    """A soft-deleted connection is not served."""
    assert client.delete("/connections/c1", params={"provider_config_key": PCK}).status_code == 200
    assert _get(client).status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"provider_config_key": PCK, "unknown": "1"},
        {"provider_config_key": "bad/key"},
        {"provider_config_key": "k" * 256},
        {"provider_config_key": ""},
        {"provider_config_key": PCK, "refresh_token": "yes"},
        {"provider_config_key": PCK, "force_refresh": "1"},
        {"provider_config_key": PCK, "refresh_github_app_jwt_token": "TRUE"},
    ],
)
@pytest.mark.usefixtures("oauth2")
def test_bad_query_is_400_invalid_query_params(client: TestClient, params: dict[str, str]) -> None:
    """Missing, unknown or malformed query parameters answer 400 invalid_query_params."""
    response = client.get("/connections/c1", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_query_params"
    assert error["errors"] and all({"code", "message", "path"} == set(e) for e in error["errors"])


@pytest.mark.usefixtures("oauth2")
def test_github_app_flag_is_accepted_and_ignored(client: TestClient) -> None:
    """refresh_github_app_jwt_token=true is accepted (it only matters for GitHub App)."""
    assert _get(client, refresh_github_app_jwt_token="true").status_code == 200


@pytest.mark.parametrize("cid", ["bad<id>", "é", "x" * 256, "tab\tid"])
@pytest.mark.usefixtures("oauth2")
def test_bad_connection_id_is_400_invalid_uri_params(client: TestClient, cid: str) -> None:
    """A connection id outside Nango's alphabet or over 255 chars answers 400 invalid_uri_params."""
    response = _get(client, cid)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_uri_params"


@pytest.mark.parametrize("cid", ["user/42", "a b", "x=1;y=[2]", "{id}|'q'\"@$~+,:", "back\\slash"])
def test_connection_ids_with_special_characters_round_trip(
    client: TestClient, make_integration: IntegrationFactory, import_connection: Importer, cid: str
) -> None:
    """Ids using Nango's full alphabet, including ``/`` sent as %2F, are served."""
    make_integration()
    import_connection(cid)
    response = _get(client, cid)
    assert response.status_code == 200
    assert response.json()["connection_id"] == cid


@pytest.mark.usefixtures("oauth2")
def test_active_auth_error_is_listed(runtime: Runtime, client: TestClient) -> None:
    """A connection with an auth error log id lists it in errors[]."""
    with runtime.store() as store:
        store.session.execute(update(Connection).values(auth_error_log_id="log-123"))
    assert _get(client).json()["errors"] == [{"type": "auth", "log_id": "log-123"}]


# -- credential shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "credentials", "expected"),
    [
        (
            "oauth2-cc",
            {
                "type": "OAUTH2_CC",
                "token": "cc-token",
                "client_id": "cid",
                "client_secret": "csecret",
                "expires_at": 1_900_000_000,
            },
            {
                "type": "OAUTH2_CC",
                "token": "cc-token",
                "client_id": "cid",
                "client_secret": "csecret",
                "expires_at": "2030-03-17T17:46:40.000Z",
                "raw": {"access_token": "cc-token", "expires_at": "2030-03-17T17:46:40.000Z"},
            },
        ),
        (
            "trello",
            {"type": "OAUTH1", "oauth_token": "ot", "oauth_token_secret": "ots"},
            {
                "type": "OAUTH1",
                "oauth_token": "ot",
                "oauth_token_secret": "ots",
                "raw": {"oauth_token": "ot", "oauth_token_secret": "ots"},
            },
        ),
        ("api-key", {"type": "API_KEY", "apiKey": "key-1"}, {"type": "API_KEY", "apiKey": "key-1"}),
        (
            "basic",
            {"type": "BASIC", "username": "u", "password": "p"},
            {"type": "BASIC", "username": "u", "password": "p"},
        ),
    ],
)
def test_credential_shapes_per_type(
    client: TestClient,
    make_integration: IntegrationFactory,
    import_connection: Importer,
    provider: str,
    credentials: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    """Each credential type is served in Nango's shape for that type."""
    make_integration(unique_key="k", provider=provider)
    import_connection("c1", provider_config_key="k", credentials=credentials)
    response = client.get("/connections/c1", params={"provider_config_key": "k"})
    assert response.status_code == 200
    assert response.json()["credentials"] == expected


# -- the refresh seam -------------------------------------------------------------------------


class FakeRefresher:
    """Records calls; serves new credentials or raises RefreshDenied when told to."""

    def __init__(self, deny: RefreshDenied | None = None) -> None:
        self.deny = deny
        self.calls: list[tuple[int, dict[str, Any], bool]] = []

    def refresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """Record the call, then deny or serve a refreshed access token."""
        self.calls.append((conn.id, dict(credentials), force))
        if self.deny is not None:
            raise self.deny
        return conn, {**credentials, "access_token": "refreshed-at"}


@pytest.mark.usefixtures("oauth2")
def test_refresher_gets_decrypted_credentials_and_force_flag(
    runtime: Runtime, client: TestClient
) -> None:
    """The refresher sees the stored credentials and force_refresh; its result is served."""
    fake = FakeRefresher()
    runtime.refresher = fake
    body = _get(client, force_refresh="true").json()
    assert body["credentials"]["access_token"] == "refreshed-at"
    assert fake.calls[0][1]["refresh_token"] == "rt-1"
    assert fake.calls[0][2] is True
    _get(client)
    assert fake.calls[1][2] is False


@pytest.mark.parametrize(
    ("reason", "status", "message"),
    [
        (
            Refusal.PROVIDER_REJECTED,
            400,
            "The external API returned an error when trying to refresh the access token. "
            "Please try again later.",
        ),
        (Refusal.EXHAUSTED, 424, "The refresh limit has been reached for this connection."),
    ],
)
@pytest.mark.usefixtures("oauth2")
def test_refresh_denied_is_invalid_credentials_envelope(
    runtime: Runtime, client: TestClient, reason: Refusal, status: int, message: str
) -> None:
    """A refusal answers its status, invalid_credentials, its message and the credential-less
    connection."""
    runtime.refresher = FakeRefresher(RefreshDenied(reason, log_id="log-9"))
    response = _get(client, refresh_token="true")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == "invalid_credentials"
    assert error["message"] == message
    connection = error["payload"]["connection"]
    assert set(connection) == FULL_KEYS
    assert connection["credentials"] == {}
    assert connection["errors"] == [{"type": "auth", "log_id": "log-9"}]
    assert connection["connection_config"] == {"region": "eu", "nested": {"keep": True}}
    assert "rt-1" not in response.text
    assert "at-1" not in response.text


@pytest.mark.usefixtures("oauth2")
def test_refresh_denied_prefers_the_connection_it_carries(
    runtime: Runtime, client: TestClient
) -> None:
    """When RefreshDenied carries a (newer) row, that row is shown in the payload."""
    with runtime.store() as store:
        row = store.get_connection(PCK, "c1")
        assert row is not None
        row.metadata_ = {"from": "refresher"}
    runtime.refresher = FakeRefresher(RefreshDenied(Refusal.COOLDOWN, connection=row))
    error = _get(client).json()["error"]
    assert error["payload"]["connection"]["metadata"] == {"from": "refresher"}
    assert error["payload"]["connection"]["errors"] == []


@pytest.mark.usefixtures("oauth2")
def test_read_transaction_is_committed_before_the_refresher_runs(
    runtime: Runtime, client: TestClient, clock: FakeClock
) -> None:
    """The refresher can open its own write transaction (SQLite would block otherwise)."""
    seen: list[Any] = []

    class WritingRefresher:
        def refresh_for_read(
            self, conn: Connection, credentials: dict[str, Any], *, force: bool
        ) -> tuple[Connection, dict[str, Any]]:
            with runtime.store() as store:
                seen.append(
                    store.session.scalar(
                        select(Connection.last_fetched_at).where(Connection.id == conn.id)
                    )
                )
                store.session.execute(
                    update(Connection).where(Connection.id == conn.id).values(refresh_attempts=0)
                )
            return conn, credentials

    runtime.refresher = WritingRefresher()
    clock.advance(5)
    assert _get(client).status_code == 200
    # The read wrote nothing and held no lock; its stamp is written later, by FetchStamps.
    assert seen == [None]
