"""The provider catalog routes and the health route."""

from __future__ import annotations

from fastapi.testclient import TestClient

from freshtoken.runtime import Runtime


def test_list_providers_returns_the_catalog(runtime: Runtime, client: TestClient) -> None:
    """GET /providers returns every catalog entry in its public form."""
    response = client.get("/providers")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [p["name"] for p in data] == runtime.catalog.names()
    oauth2 = next(p for p in data if p["name"] == "oauth2")
    assert oauth2["auth_mode"] == "OAUTH2"


def test_list_providers_search(client: TestClient) -> None:
    """``search`` filters providers on name and display name, case-insensitively."""
    data = client.get("/providers", params={"search": "GITHUB"}).json()["data"]
    assert data and all("github" in (p["name"] + p["display_name"]).lower() for p in data)


def test_list_providers_rejects_unknown_query(client: TestClient) -> None:
    """Unknown query parameters on /providers answer 400 invalid_query_params."""
    response = client.get("/providers", params={"x": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_query_params"


def test_get_provider(runtime: Runtime, client: TestClient) -> None:
    """GET /providers/{name} returns that entry."""
    response = client.get("/providers/github")
    assert response.status_code == 200
    spec = runtime.catalog.get("github")
    assert spec is not None
    assert response.json() == {"data": spec.to_public()}


def test_get_unknown_provider_is_404(client: TestClient) -> None:
    """An unknown provider answers 404 not_found."""
    response = client.get("/providers/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_health_ok(client: TestClient) -> None:
    """GET /health answers 200 {status: ok} when the database answers."""
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
