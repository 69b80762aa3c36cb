"""Integrations CRUD: /integrations and /integrations/{uniqueKey}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection, Integration

Importer = Callable[..., dict[str, Any]]
Snapshot = Callable[[], dict[str, list[tuple[Any, ...]]]]

INTEGRATION_KEYS = {
    "unique_key",
    "provider",
    "display_name",
    "logo",
    "forward_webhooks",
    "created_at",
    "updated_at",
}
CREATE_BODY = {
    "provider": "oauth2",
    "unique_key": "my-oauth",
    "display_name": "My OAuth",
    "credentials": {
        "type": "OAUTH2",
        "client_id": "cid-1",
        "client_secret": "csecret-1",
        "scopes": "read,write",
    },
}


@pytest.fixture
def created(client: TestClient) -> dict[str, Any]:
    """The integration ``my-oauth`` created through the API."""
    response = client.post("/integrations", json=CREATE_BODY)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_create_returns_public_integration_without_secret(
    runtime: Runtime, client: TestClient
) -> None:
    """POST /integrations answers 200 {data} without credentials; the secret is encrypted."""
    response = client.post("/integrations", json=CREATE_BODY)
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == INTEGRATION_KEYS
    assert data["unique_key"] == "my-oauth"
    assert data["display_name"] == "My OAuth"
    assert data["forward_webhooks"] is False
    assert "csecret-1" not in response.text
    with runtime.store() as store:
        row = store.get_integration("my-oauth")
        assert row is not None
        assert row.client_secret_enc is not None and "csecret-1" not in row.client_secret_enc
        assert store.client_secret(row) == "csecret-1"


def test_create_without_credentials_uses_provider_display_name(client: TestClient) -> None:
    """An integration without display_name shows the provider's display name."""
    response = client.post("/integrations", json={"provider": "github", "unique_key": "gh"})
    assert response.status_code == 200
    assert response.json()["data"]["display_name"] == "GitHub"


@pytest.mark.usefixtures("created")
def test_duplicate_unique_key_is_400(client: TestClient, snapshot: Snapshot) -> None:
    """Creating a second integration with the same key answers 400 "Unique key already exists"."""
    before = snapshot()
    response = client.post("/integrations", json=CREATE_BODY)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_body"
    assert error["errors"][0]["message"] == "Unique key already exists"
    assert snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "no-such-provider", "unique_key": "k"},
        {"provider": "oauth2"},
        {"provider": "oauth2", "unique_key": "bad/key"},
        {"provider": "oauth2", "unique_key": "k", "forward_webhooks": True},
        {"provider": "oauth2", "unique_key": "k", "credentials": {"type": "OAUTH2"}},
        {
            "provider": "oauth2",
            "unique_key": "k",
            "credentials": {"type": "OAUTH1", "client_id": "i", "client_secret": "s"},
        },
    ],
)
def test_create_rejects_invalid_bodies(
    client: TestClient, snapshot: Snapshot, body: dict[str, Any]
) -> None:
    """Unknown providers, bad keys, unknown fields and mismatched types answer 400 invalid_body."""
    before = snapshot()
    response = client.post("/integrations", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert snapshot() == before


@pytest.mark.usefixtures("created")
def test_list_integrations(client: TestClient) -> None:
    """GET /integrations lists every integration without credentials."""
    response = client.get("/integrations")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [d["unique_key"] for d in data] == ["my-oauth"]
    assert set(data[0]) == INTEGRATION_KEYS
    assert "csecret-1" not in response.text


def test_list_integrations_rejects_query(client: TestClient) -> None:
    """GET /integrations takes no query parameters."""
    response = client.get("/integrations", params={"x": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_query_params"


@pytest.mark.usefixtures("created")
def test_get_integration_with_and_without_credentials(client: TestClient) -> None:
    """GET /integrations/{key} hides credentials unless include=credentials."""
    plain = client.get("/integrations/my-oauth")
    assert plain.status_code == 200
    assert set(plain.json()["data"]) == INTEGRATION_KEYS
    full = client.get(
        "/integrations/my-oauth", params=[("include", "credentials"), ("include", "webhook")]
    )
    data = full.json()["data"]
    assert data["credentials"] == {
        "type": "OAUTH2",
        "client_id": "cid-1",
        "client_secret": "csecret-1",
        "scopes": "read,write",
    }
    assert data["webhook_url"] is None


@pytest.mark.usefixtures("created")
def test_get_integration_errors(client: TestClient) -> None:
    """Unknown key → 404 not_found; unknown include value or query → 400 invalid_query_params."""
    missing = client.get("/integrations/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": "not_found", "message": "Integration does not exist"}
    bad_include = client.get("/integrations/my-oauth", params={"include": "everything"})
    assert bad_include.json()["error"]["code"] == "invalid_query_params"
    extra = client.get("/integrations/my-oauth", params={"foo": "1"})
    assert extra.json()["error"]["code"] == "invalid_query_params"


@pytest.mark.usefixtures("created")
def test_patch_updates_name_and_credentials(runtime: Runtime, client: TestClient) -> None:
    """PATCH changes display name and OAuth client; the new secret is stored encrypted."""
    response = client.patch(
        "/integrations/my-oauth",
        json={
            "display_name": "Renamed",
            "credentials": {"type": "OAUTH2", "client_id": "cid-2", "client_secret": "cs-2"},
        },
    )
    assert response.status_code == 200
    assert response.json()["data"]["display_name"] == "Renamed"
    with runtime.store() as store:
        row = store.get_integration("my-oauth")
        assert row is not None
        assert (row.client_id, store.client_secret(row), row.scopes) == ("cid-2", "cs-2", None)


@pytest.mark.usefixtures("created")
def test_patch_rename_rekeys_connections(
    runtime: Runtime, client: TestClient, import_connection: Importer
) -> None:
    """Renaming the unique key moves its connections to the new provider_config_key."""
    import_connection("c1", provider_config_key="my-oauth")
    response = client.patch("/integrations/my-oauth", json={"unique_key": "renamed"})
    assert response.status_code == 200
    assert response.json()["data"]["unique_key"] == "renamed"
    moved = client.get("/connections/c1", params={"provider_config_key": "renamed"})
    assert moved.status_code == 200
    assert client.get("/integrations/my-oauth").status_code == 404
    with runtime.store() as store:
        keys = set(store.session.scalars(select(Connection.provider_config_key)))
    assert keys == {"renamed"}


@pytest.mark.usefixtures("created")
def test_patch_errors(client: TestClient, snapshot: Snapshot) -> None:
    """PATCH: unknown key → 404; taken key or bad body → 400 invalid_body; nothing changes."""
    client.post("/integrations", json={**CREATE_BODY, "unique_key": "other"})
    before = snapshot()
    assert client.patch("/integrations/nope", json={}).status_code == 404
    taken = client.patch("/integrations/my-oauth", json={"unique_key": "other"})
    assert taken.status_code == 400
    assert taken.json()["error"]["errors"][0]["message"] == "Unique key already exists"
    extra = client.patch("/integrations/my-oauth", json={"provider": "github"})
    assert extra.json()["error"]["code"] == "invalid_body"
    assert snapshot() == before


@pytest.mark.usefixtures("created")
def test_delete_integration(
    runtime: Runtime, client: TestClient, import_connection: Importer
) -> None:
    """DELETE removes the integration and its connections stop being served."""
    import_connection("c1", provider_config_key="my-oauth")
    response = client.delete("/integrations/my-oauth")
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert client.get("/integrations/my-oauth").status_code == 404
    assert client.get("/connections").json() == {"connections": []}
    with runtime.store() as store:
        assert store.session.scalars(select(Integration)).all() == []
        live = store.session.scalars(select(Connection).where(Connection.deleted_at.is_(None)))
        assert live.all() == []


def test_delete_unknown_integration_is_404(client: TestClient) -> None:
    """DELETE of a missing integration answers 404 not_found "Integration does not exist"."""
    response = client.delete("/integrations/nope")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "Integration does not exist",
    }


def test_integration_key_path_is_validated(client: TestClient) -> None:
    """A unique key outside Nango's alphabet answers 400 invalid_uri_params."""
    response = client.get("/integrations/bad%3Ckey%3E")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_uri_params"
