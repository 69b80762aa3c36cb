"""POST /connections (import), PATCH and DELETE of a connection."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection

IntegrationFactory = Callable[..., str]
Importer = Callable[..., dict[str, Any]]
Snapshot = Callable[[], dict[str, list[tuple[Any, ...]]]]

PCK = "oauth2-test"


def _stored(runtime: Runtime, cid: str = "c1", pck: str = PCK) -> tuple[Connection, dict[str, Any]]:
    with runtime.store() as store:
        row = store.get_connection(pck, cid)
        assert row is not None
        return row, store.credentials(row)


def _post(client: TestClient, **body: Any) -> Any:
    payload = {"provider_config_key": PCK, "connection_id": "c1", **body}
    payload.setdefault("credentials", {"type": "OAUTH2", "access_token": "at-1"})
    return client.post("/connections", json=payload)


# -- import ----------------------------------------------------------------------------------


def test_import_oauth2_returns_201_full_connection(
    runtime: Runtime, client: TestClient, make_integration: IntegrationFactory
) -> None:
    """An OAUTH2 import answers 201 with the public connection (refresh token stripped)."""
    make_integration()
    response = _post(
        client,
        credentials={
            "type": "OAUTH2",
            "access_token": "at-1",
            "refresh_token": "rt-1",
            "expires_at": "2030-01-01T00:00:00+00:00",
            "config_override": {"client_id": "override-id"},
        },
        metadata={"a": 1},
        connection_config={"instance_url": "https://x.example"},
        tags={"env": "prod"},
        end_user={"id": "u1", "email": "u@example.com", "organization": {"id": "org1"}},
        webhook_url_override="https://hooks.example/x",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["credentials"] == {
        "type": "OAUTH2",
        "access_token": "at-1",
        "expires_at": "2030-01-01T00:00:00.000Z",
        "raw": {"access_token": "at-1", "expires_at": "2030-01-01T00:00:00.000Z"},
        "config_override": {"client_id": "override-id"},
    }
    assert "rt-1" not in response.text
    assert body["end_user"] == {
        "id": "u1",
        "email": "u@example.com",
        "display_name": None,
        "tags": None,
        "organization": {"id": "org1", "display_name": None},
    }
    assert body["webhook_url_override"] == "https://hooks.example/x"
    row, creds = _stored(runtime)
    assert creds["refresh_token"] == "rt-1"
    assert creds["raw"]["refresh_token"] == "rt-1"
    assert row.has_refresh_token is True
    assert row.expires_at is not None and row.expires_at.year == 2030


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00.000Z"),
        ("2030-01-01T01:00:00+01:00", "2030-01-01T00:00:00.000Z"),
        (1_893_456_000, "2030-01-01T00:00:00.000Z"),
        (1_893_456_000_000, "2030-01-01T00:00:00.000Z"),
        (1_893_456_000.5, "2030-01-01T00:00:00.500Z"),
    ],
)
def test_expires_at_is_normalised_to_iso(
    runtime: Runtime,
    client: TestClient,
    make_integration: IntegrationFactory,
    value: Any,
    expected: str,
) -> None:
    """expires_at given as ISO, epoch seconds or epoch milliseconds is stored as ISO."""
    make_integration()
    response = _post(
        client, credentials={"type": "OAUTH2", "access_token": "a", "expires_at": value}
    )
    assert response.status_code == 201, response.text
    assert response.json()["credentials"]["expires_at"] == expected
    assert _stored(runtime)[1]["expires_at"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "",
        -5,
        0,
        True,
        [],
        {},
        "2030-13-45",
        "1893456000",
        10**20,
        1e300,
        "1969-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_unparseable_expires_at_is_400(
    client: TestClient, make_integration: IntegrationFactory, snapshot: Snapshot, value: Any
) -> None:
    """An expires_at that is not an ISO date or a positive epoch number answers 400."""
    make_integration()
    before = snapshot()
    response = _post(
        client, credentials={"type": "OAUTH2", "access_token": "a", "expires_at": value}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert snapshot() == before


def test_oauth2_with_refresh_token_and_no_expiry_is_accepted(
    runtime: Runtime, client: TestClient, make_integration: IntegrationFactory
) -> None:
    """An OAUTH2 import with a refresh token but no expires_at is stored without an expiry."""
    make_integration()
    response = _post(
        client, credentials={"type": "OAUTH2", "access_token": "a", "refresh_token": "r"}
    )
    assert response.status_code == 201
    row, _ = _stored(runtime)
    assert row.expires_at is None
    assert row.has_refresh_token is True


def test_given_raw_is_kept(
    runtime: Runtime, client: TestClient, make_integration: IntegrationFactory
) -> None:
    """A raw token response given on import is stored as is (refresh keys stripped on output)."""
    make_integration()
    raw = {"access_token": "a", "refresh_token": "r", "id_token": "idt", "scope": "x y"}
    response = _post(
        client,
        credentials={"type": "OAUTH2", "access_token": "a", "refresh_token": "r", "raw": raw},
    )
    assert response.json()["credentials"]["raw"] == {
        "access_token": "a",
        "id_token": "idt",
        "scope": "x y",
    }
    assert _stored(runtime)[1]["raw"] == raw


@pytest.mark.parametrize(
    ("provider", "credentials"),
    [
        ("oauth2-cc", {"type": "OAUTH2_CC", "token": "t", "client_id": "i", "client_secret": "s"}),
        ("trello", {"type": "OAUTH1", "oauth_token": "t", "oauth_token_secret": "s"}),
        ("api-key", {"type": "API_KEY", "apiKey": "k"}),
        ("basic", {"type": "BASIC", "username": "", "password": ""}),
    ],
)
def test_import_every_credential_type(
    runtime: Runtime,
    client: TestClient,
    make_integration: IntegrationFactory,
    provider: str,
    credentials: dict[str, Any],
) -> None:
    """Each credential type is accepted by an integration of the matching auth mode."""
    make_integration(unique_key="k", provider=provider)
    response = client.post(
        "/connections",
        json={"provider_config_key": "k", "connection_id": "c1", "credentials": credentials},
    )
    assert response.status_code == 201, response.text
    row, stored = _stored(runtime, pck="k")
    assert row.credentials_type == credentials["type"]
    for key, value in credentials.items():
        assert stored[key] == value


def test_credentials_type_must_match_provider_auth_mode(
    client: TestClient, make_integration: IntegrationFactory, snapshot: Snapshot
) -> None:
    """API_KEY credentials for an OAUTH2 provider answer 400 invalid_body naming the rule."""
    make_integration()
    before = snapshot()
    response = _post(client, credentials={"type": "API_KEY", "apiKey": "k"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert error["errors"][0]["path"] == ["credentials", "type"]
    assert "OAUTH2" in error["errors"][0]["message"]
    assert snapshot() == before


def test_unknown_integration_is_404(client: TestClient) -> None:
    """Importing into an integration that does not exist answers 404 not_found."""
    response = _post(client)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "Integration does not exist",
    }


def test_connection_id_defaults_to_uuid4(
    client: TestClient, make_integration: IntegrationFactory
) -> None:
    """Without connection_id a UUIDv4 is generated."""
    make_integration()
    response = client.post(
        "/connections",
        json={"provider_config_key": PCK, "credentials": {"type": "OAUTH2", "access_token": "a"}},
    )
    assert response.status_code == 201
    assert uuid.UUID(response.json()["connection_id"]).version == 4


@pytest.mark.parametrize(
    "body",
    [
        {"credentials": {"type": "OAUTH2", "access_token": "a", "extra": 1}},
        {"credentials": {"type": "OAUTH2"}},
        {"credentials": {"type": "OAUTH2", "access_token": ""}},
        {"credentials": {"type": "NONE"}},
        {"credentials": {"type": "OAUTH2_CC", "token": "t"}},
        {"credentials": {"type": "API_KEY", "api_key": "k"}},
        {"unknown_field": 1},
        {"connection_id": "bad<id>"},
        {"connection_id": "x" * 256},
        {"provider_config_key": "bad/key"},
        {"tags": {"k": 1}},
        {"metadata": [1, 2]},
        {"end_user": {"email": "no-id@example.com"}},
        {"end_user": {"id": "u", "unknown": 1}},
        {"webhook_url_override": "ftp://x"},
    ],
)
def test_invalid_body_is_400_and_changes_nothing(
    client: TestClient,
    make_integration: IntegrationFactory,
    import_connection: Importer,
    snapshot: Snapshot,
    body: dict[str, Any],
) -> None:
    """Schema violations (strict: unknown fields too) answer 400 invalid_body and store nothing."""
    make_integration()
    import_connection("c1")
    before = snapshot()
    response = _post(client, **body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert error["errors"]
    assert snapshot() == before


def test_query_string_is_rejected_on_import(
    client: TestClient, make_integration: IntegrationFactory
) -> None:
    """POST /connections takes no query parameters (400 invalid_query_params)."""
    make_integration()
    response = client.post(
        "/connections?x=1",
        json={"provider_config_key": PCK, "credentials": {"type": "OAUTH2", "access_token": "a"}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_query_params"


def test_legacy_post_connection_accepts_the_same_body(
    client: TestClient, make_integration: IntegrationFactory
) -> None:
    """POST /connection (deprecated) imports like POST /connections."""
    make_integration()
    response = client.post(
        "/connection",
        json={
            "provider_config_key": PCK,
            "connection_id": "legacy",
            "credentials": {"type": "OAUTH2", "access_token": "a"},
        },
    )
    assert response.status_code == 201
    assert response.json()["connection_id"] == "legacy"


def test_reimport_overrides_credentials_and_resets_refresh_state(
    runtime: Runtime, client: TestClient, make_integration: IntegrationFactory
) -> None:
    """Importing an existing id replaces its credentials and clears failure bookkeeping."""
    make_integration()
    first = _post(client, credentials={"type": "OAUTH2", "access_token": "old"}, metadata={"k": 1})
    with runtime.store() as store:
        row = store.get_connection(PCK, "c1")
        assert row is not None
        row.refresh_exhausted = True
        row.auth_error_log_id = "log-1"
    second = _post(client, credentials={"type": "OAUTH2", "access_token": "new"})
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["errors"] == []
    row, creds = _stored(runtime)
    assert creds["access_token"] == "new"
    assert row.refresh_exhausted is False
    assert row.metadata_ == {"k": 1}  # not given again: kept


# -- patch -----------------------------------------------------------------------------------


def test_patch_updates_end_user_tags_and_webhook(
    runtime: Runtime,
    client: TestClient,
    make_integration: IntegrationFactory,
    import_connection: Importer,
) -> None:
    """PATCH sets end_user, tags and webhook_url_override, and "" clears the override."""
    make_integration()
    import_connection("c1", webhook_url_override="https://old.example")
    response = client.patch(
        "/connections/c1",
        params={"provider_config_key": PCK},
        json={"end_user": {"id": "u2", "display_name": "Ann"}, "tags": {"t": "v"}},
    )
    assert response.status_code == 200
    assert response.json() == {"success": True}
    row, _ = _stored(runtime)
    assert row.end_user is not None and row.end_user["display_name"] == "Ann"
    assert row.tags == {"t": "v"}
    assert row.webhook_url_override == "https://old.example"
    cleared = client.patch(
        "/connections/c1", params={"provider_config_key": PCK}, json={"webhook_url_override": ""}
    )
    assert cleared.status_code == 200
    assert _stored(runtime)[0].webhook_url_override is None


def test_patch_unknown_connection_is_404_unknown_connection(
    client: TestClient, make_integration: IntegrationFactory
) -> None:
    """PATCH of a connection that does not exist answers 404 unknown_connection."""
    make_integration()
    response = client.patch("/connections/nope", params={"provider_config_key": PCK}, json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_connection"


@pytest.mark.parametrize(
    ("params", "body", "code"),
    [
        ({"provider_config_key": PCK}, {"metadata": {}}, "invalid_body"),
        ({"provider_config_key": PCK}, {"tags": "x"}, "invalid_body"),
        ({"provider_config_key": PCK, "extra": "1"}, {}, "invalid_query_params"),
        ({}, {}, "invalid_query_params"),
    ],
)
def test_patch_is_strict(
    client: TestClient,
    make_integration: IntegrationFactory,
    import_connection: Importer,
    snapshot: Snapshot,
    params: dict[str, str],
    body: dict[str, Any],
    code: str,
) -> None:
    """PATCH rejects unknown body fields and query parameters and changes nothing."""
    make_integration()
    import_connection("c1")
    before = snapshot()
    response = client.patch("/connections/c1", params=params, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert snapshot() == before


# -- delete ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/connections", "/connection"])
def test_delete_soft_deletes_and_wipes_credentials(
    runtime: Runtime,
    client: TestClient,
    make_integration: IntegrationFactory,
    import_connection: Importer,
    prefix: str,
) -> None:
    """DELETE answers {success: true}, keeps the row as deleted and wipes its ciphertext."""
    make_integration()
    import_connection("c1")
    response = client.delete(f"{prefix}/c1", params={"provider_config_key": PCK})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    with runtime.store() as store:
        rows = list(store.session.query(Connection))
    assert len(rows) == 1
    assert rows[0].deleted_at is not None
    assert rows[0].credentials_enc is None


def test_delete_unknown_is_404_unknown_connection(
    client: TestClient, make_integration: IntegrationFactory
) -> None:
    """DELETE of a missing connection answers 404 unknown_connection."""
    make_integration()
    response = client.delete("/connections/nope", params={"provider_config_key": PCK})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_connection"


def test_delete_requires_strict_query(client: TestClient) -> None:
    """DELETE without provider_config_key (or with extras) answers 400 invalid_query_params."""
    assert client.delete("/connections/c1").json()["error"]["code"] == "invalid_query_params"
    response = client.delete("/connections/c1", params={"provider_config_key": PCK, "x": "1"})
    assert response.json()["error"]["code"] == "invalid_query_params"


def test_deleted_id_can_be_reimported(
    client: TestClient, make_integration: IntegrationFactory, import_connection: Importer
) -> None:
    """After a delete the same connection id can be imported again as a new row."""
    make_integration()
    first = import_connection("c1")
    client.delete("/connections/c1", params={"provider_config_key": PCK})
    second = import_connection("c1", credentials={"type": "OAUTH2", "access_token": "again"})
    assert second["id"] != first["id"]
    got = client.get("/connections/c1", params={"provider_config_key": PCK}).json()
    assert got["credentials"]["access_token"] == "again"
