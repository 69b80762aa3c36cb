"""GET /connections: filters, pagination, strictness, and no credentials."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from freshtoken.clock import FakeClock

IntegrationFactory = Callable[..., str]
Importer = Callable[..., dict[str, Any]]

ITEM_KEYS = {
    "id",
    "connection_id",
    "provider_config_key",
    "provider",
    "errors",
    "end_user",
    "tags",
    "metadata",
    "created",
}


@pytest.fixture
def populated(
    clock: FakeClock, make_integration: IntegrationFactory, import_connection: Importer
) -> None:
    """Four connections over two integrations, created one minute apart (c1 oldest)."""
    make_integration("alpha")
    make_integration("beta")
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("c1", "alpha", {"tags": {"Env": "prod"}, "end_user": {"id": "u1", "email": "ann@x.io"}}),
        (
            "c2",
            "alpha",
            {
                "tags": {"env": "dev"},
                "end_user": {"id": "u2", "display_name": "Bob", "organization": {"id": "o1"}},
            },
        ),
        ("c3", "beta", {"tags": {"env": "prod", "team": "t"}, "end_user": {"id": "u1"}}),
        ("other", "beta", {}),
    ]
    for cid, pck, extra in specs:
        import_connection(cid, provider_config_key=pck, **extra)
        clock.advance(60)


def _ids(client: TestClient, params: dict[str, str] | None = None) -> list[str]:
    response = client.get("/connections", params=params or {})
    assert response.status_code == 200, response.text
    return [c["connection_id"] for c in response.json()["connections"]]


@pytest.mark.usefixtures("populated")
def test_list_is_newest_first_without_credentials(client: TestClient) -> None:
    """All live connections are listed newest first, with no credentials in the items."""
    response = client.get("/connections")
    body = response.json()
    assert [c["connection_id"] for c in body["connections"]] == ["other", "c3", "c2", "c1"]
    for item in body["connections"]:
        assert set(item) == ITEM_KEYS
    assert "at-secret" not in response.text
    assert "rt-secret" not in response.text
    assert "credentials" not in response.text


@pytest.mark.usefixtures("populated")
def test_legacy_list_path(client: TestClient) -> None:
    """GET /connection (deprecated) lists like GET /connections."""
    assert client.get("/connection").json() == client.get("/connections").json()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"connectionId": "c2"}, ["c2"]),
        ({"integrationId": "alpha"}, ["c2", "c1"]),
        ({"integrationId": "alpha,beta"}, ["other", "c3", "c2", "c1"]),
        ({"integrationId": "nope"}, []),
        ({"search": "C"}, ["c3", "c2", "c1"]),
        ({"search": "ann@"}, ["c1"]),
        ({"search": "bob"}, ["c2"]),
        ({"endUserId": "u1"}, ["c3", "c1"]),
        ({"endUserOrganizationId": "o1"}, ["c2"]),
        ({"tags[env]": "prod"}, ["c3", "c1"]),
        ({"tags[ENV]": "prod", "tags[team]": "t"}, ["c3"]),
        ({"tags[env]": "nope"}, []),
        ({"limit": "2"}, ["other", "c3"]),
        ({"limit": "2", "page": "1"}, ["c2", "c1"]),
        ({"limit": "3", "page": "5"}, []),
        ({"search": "c", "limit": "1", "page": "1"}, ["c2"]),
    ],
)
@pytest.mark.usefixtures("populated")
def test_list_filters(client: TestClient, params: dict[str, str], expected: list[str]) -> None:
    """Each Nango filter narrows the list; limit/page paginate after filtering."""
    assert _ids(client, params) == expected


@pytest.mark.usefixtures("populated")
def test_list_excludes_deleted(client: TestClient) -> None:
    """Soft-deleted connections are not listed."""
    client.delete("/connections/c1", params={"provider_config_key": "alpha"})
    assert "c1" not in _ids(client)


@pytest.mark.parametrize(
    "params",
    [
        {"unknown": "1"},
        {"provider_config_key": "alpha"},
        {"limit": "0"},
        {"limit": "2001"},
        {"limit": "ten"},
        {"page": "-1"},
        {"tags": "x"},
        {"tags[]": "x"},
        {"tags[env]": ""},
        {"tags[" + "k" * 65 + "]": "x"},
        {"tags[env][nested]": "x"},  # a nested deepObject is not a tag filter
    ],
)
def test_list_rejects_bad_query(client: TestClient, params: dict[str, str]) -> None:
    """Unknown or out-of-range query parameters answer 400 invalid_query_params."""
    response = client.get("/connections", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_query_params"


@pytest.mark.usefixtures("populated")
def test_list_item_shape(client: TestClient) -> None:
    """A list item carries end user, tags, metadata and an ISO ``created``."""
    item = client.get("/connections", params={"connectionId": "c2"}).json()["connections"][0]
    assert item["end_user"]["organization"] == {"id": "o1", "display_name": None}
    assert item["tags"] == {"env": "dev"}
    assert item["errors"] == []
    assert item["created"].endswith("Z")
