"""Connection metadata: replace, merge, multiple ids, and the legacy per-connection routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from freshtoken.runtime import Runtime

IntegrationFactory = Callable[..., str]
Importer = Callable[..., dict[str, Any]]
Snapshot = Callable[[], dict[str, list[tuple[Any, ...]]]]

PCK = "oauth2-test"


@pytest.fixture
def two(make_integration: IntegrationFactory, import_connection: Importer) -> None:
    """Connections c1 (metadata {a: 1, b: 1}) and c2 (no metadata)."""
    make_integration()
    import_connection("c1", metadata={"a": 1, "b": 1})
    import_connection("c2")


def _metadata(runtime: Runtime, cid: str) -> Any:
    with runtime.store() as store:
        row = store.get_connection(PCK, cid)
        assert row is not None
        return row.metadata_


@pytest.mark.parametrize("path", ["/connections/metadata", "/connection/metadata"])
@pytest.mark.usefixtures("two")
def test_post_replaces_metadata(runtime: Runtime, client: TestClient, path: str) -> None:
    """POST replaces the whole metadata object and answers 201 with the request body."""
    body = {"connection_id": "c1", "provider_config_key": PCK, "metadata": {"b": 2}}
    response = client.post(path, json=body)
    assert response.status_code == 201
    assert response.json() == body
    assert _metadata(runtime, "c1") == {"b": 2}


@pytest.mark.parametrize("path", ["/connections/metadata", "/connection/metadata"])
@pytest.mark.usefixtures("two")
def test_patch_merges_metadata(runtime: Runtime, client: TestClient, path: str) -> None:
    """PATCH merges keys shallowly into the existing metadata and answers 200 with the body."""
    body = {"connection_id": "c1", "provider_config_key": PCK, "metadata": {"b": 2, "c": {"d": 1}}}
    response = client.patch(path, json=body)
    assert response.status_code == 200
    assert response.json() == body
    assert _metadata(runtime, "c1") == {"a": 1, "b": 2, "c": {"d": 1}}


@pytest.mark.usefixtures("two")
def test_multiple_ids_are_all_updated(runtime: Runtime, client: TestClient) -> None:
    """A list of connection ids updates every listed connection."""
    body = {"connection_id": ["c1", "c2"], "provider_config_key": PCK, "metadata": {"x": True}}
    assert client.patch("/connections/metadata", json=body).status_code == 200
    assert _metadata(runtime, "c1") == {"a": 1, "b": 1, "x": True}
    assert _metadata(runtime, "c2") == {"x": True}


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.usefixtures("two")
def test_one_missing_id_changes_nothing(
    client: TestClient, snapshot: Snapshot, method: str
) -> None:
    """If any listed id is missing, the answer is 404 unknown_connection and nothing changes."""
    before = snapshot()
    body = {
        "connection_id": ["c1", "ghost", "c2"],
        "provider_config_key": PCK,
        "metadata": {"x": 1},
    }
    response = client.request(method, "/connections/metadata", json=body)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_connection"
    assert "ghost" in error["message"]
    assert "No actions were taken" in error["message"]
    assert snapshot() == before


@pytest.mark.usefixtures("two")
def test_single_missing_id_message(client: TestClient) -> None:
    """A single unknown id answers 404 with Nango's message naming the id and the key."""
    body = {"connection_id": "ghost", "provider_config_key": PCK, "metadata": {}}
    error = client.post("/connections/metadata", json=body).json()["error"]
    assert error["message"].startswith(
        f"Connection with connection id ghost and provider config key {PCK} not found"
    )
    assert "No actions" not in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"connection_id": "c1", "provider_config_key": PCK},
        {"connection_id": "c1", "provider_config_key": PCK, "metadata": [1]},
        {"connection_id": [], "provider_config_key": PCK, "metadata": {}},
        {"connection_id": "c1", "provider_config_key": PCK, "metadata": {}, "extra": 1},
        {"connection_id": "bad<id>", "provider_config_key": PCK, "metadata": {}},
        {"provider_config_key": PCK, "metadata": {}},
    ],
)
@pytest.mark.usefixtures("two")
def test_metadata_body_is_strict(
    client: TestClient, snapshot: Snapshot, body: dict[str, Any]
) -> None:
    """Malformed metadata bodies answer 400 invalid_body and change nothing."""
    before = snapshot()
    response = client.post("/connections/metadata", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert snapshot() == before


# -- legacy /connection/{connectionId}/metadata --------------------------------------------------


@pytest.mark.usefixtures("two")
def test_legacy_post_replaces_with_body_as_metadata(runtime: Runtime, client: TestClient) -> None:
    """POST /connection/{id}/metadata?provider_config_key= replaces metadata; 201 echoes body."""
    response = client.post(
        "/connection/c1/metadata", params={"provider_config_key": PCK}, json={"z": 1}
    )
    assert response.status_code == 201
    assert response.json() == {"z": 1}
    assert _metadata(runtime, "c1") == {"z": 1}


@pytest.mark.usefixtures("two")
def test_legacy_patch_merges_using_headers(runtime: Runtime, client: TestClient) -> None:
    """PATCH takes provider_config_key from the Provider-Config-Key header; 200 echoes body."""
    response = client.patch(
        "/connection/c1/metadata", headers={"Provider-Config-Key": PCK}, json={"z": 2}
    )
    assert response.status_code == 200
    assert response.json() == {"z": 2}
    assert _metadata(runtime, "c1") == {"a": 1, "b": 1, "z": 2}


@pytest.mark.usefixtures("two")
def test_legacy_query_key_wins_over_header(runtime: Runtime, client: TestClient) -> None:
    """The provider_config_key query parameter takes precedence over the legacy header."""
    response = client.post(
        "/connection/c2/metadata",
        params={"provider_config_key": PCK},
        headers={"Provider-Config-Key": "other"},
        json={"h": 1},
    )
    assert response.status_code == 201
    assert _metadata(runtime, "c2") == {"h": 1}


@pytest.mark.usefixtures("two")
def test_legacy_bad_header_key_is_400(client: TestClient) -> None:
    """A malformed Provider-Config-Key header answers 400 invalid_headers."""
    response = client.post(
        "/connection/c1/metadata", headers={"Provider-Config-Key": "bad/key"}, json={}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_headers"


@pytest.mark.usefixtures("two")
def test_legacy_errors(client: TestClient) -> None:
    """Legacy routes: no key → 400 missing_provider_config; unknown id → 404; non-object → 400."""
    missing = client.post("/connection/c1/metadata", json={})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "missing_provider_config"
    unknown = client.post(
        "/connection/ghost/metadata", params={"provider_config_key": PCK}, json={}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_connection"
    not_object = client.post(
        "/connection/c1/metadata", params={"provider_config_key": PCK}, json=[1, 2]
    )
    assert not_object.status_code == 400
    assert not_object.json()["error"]["code"] == "invalid_body"
    bad_key = client.post(
        "/connection/c1/metadata", params={"provider_config_key": "bad/key"}, json={}
    )
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["code"] == "invalid_query_params"
    bad_id = client.post(
        "/connection/bad<id>/metadata", params={"provider_config_key": PCK}, json={}
    )
    assert bad_id.status_code == 400
    assert bad_id.json()["error"]["code"] == "invalid_uri_params"
