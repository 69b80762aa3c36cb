"""The API's main flows on PostgreSQL, and no token or secret in clear in any table."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.settings import Settings
from freshtoken.store.credentials import iso

pytestmark = pytest.mark.integration

TABLES = ("integrations", "connections", "alembic_version")


def _secret(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def pg_clock() -> FakeClock:
    """The frozen clock of the module's runtime."""
    return FakeClock()


@pytest.fixture(scope="module")
def pg_runtime(
    pg_url: str,
    pg_clock: FakeClock,
    settings_factory: Callable[..., Settings],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Runtime]:
    """A migrated runtime on the module's fresh PostgreSQL schema."""
    settings = settings_factory(tmp_path_factory.mktemp("pg"), pg_url)
    rt = build_runtime(settings, clock=pg_clock, with_refresher=False)
    migrate.upgrade(rt.engine)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def pg_client(pg_runtime: Runtime, secret_key: str) -> Iterator[TestClient]:
    """An authenticated client over empty tables."""
    with pg_runtime.engine.begin() as conn:
        conn.execute(text("DELETE FROM connections"))
        conn.execute(text("DELETE FROM integrations"))
    with TestClient(
        create_app(pg_runtime), headers={"Authorization": f"Bearer {secret_key}"}
    ) as client:
        yield client


def raw_dump(runtime: Runtime) -> str:
    """Every row of every table, cast to text by PostgreSQL itself."""
    parts: list[str] = []
    with runtime.engine.connect() as conn:
        for table in TABLES:
            rows = conn.execute(text(f"SELECT t::text FROM {table} AS t"))  # noqa: S608 - constant names
            parts.extend(row[0] for row in rows)
    return "\n".join(parts)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_main_flows_on_postgres(
    pg_runtime: Runtime, pg_client: TestClient, pg_clock: FakeClock
) -> None:
    """Import, read, list, metadata, patch, delete and integrations CRUD work on PostgreSQL."""
    client = pg_client
    secrets = {name: _secret(name) for name in ("client", "at", "rt", "cc_secret", "cc_token")}
    secrets.update({name: _secret(name) for name in ("oauth1", "apikey", "password")})

    # Integrations CRUD.
    created = _ok(
        client.post(
            "/integrations",
            json={
                "provider": "oauth2",
                "unique_key": "pg-oauth",
                "credentials": {
                    "type": "OAUTH2",
                    "client_id": "cid",
                    "client_secret": secrets["client"],
                },
            },
        )
    )
    assert created["data"]["unique_key"] == "pg-oauth"
    for provider in ("oauth2-cc", "trello", "api-key", "basic"):
        _ok(
            client.post(
                "/integrations", json={"provider": provider, "unique_key": f"pg-{provider}"}
            )
        )
    duplicate = client.post("/integrations", json={"provider": "oauth2", "unique_key": "pg-oauth"})
    assert duplicate.status_code == 400
    got = _ok(client.get("/integrations/pg-oauth", params={"include": "credentials"}))
    assert got["data"]["credentials"]["client_secret"] == secrets["client"]
    assert len(_ok(client.get("/integrations"))["data"]) == 5

    # Import every credential type.
    imports: list[tuple[str, str, dict[str, Any]]] = [
        (
            "pg-oauth",
            "o2",
            {
                "type": "OAUTH2",
                "access_token": secrets["at"],
                "refresh_token": secrets["rt"],
                "expires_at": 1_893_456_000,
            },
        ),
        (
            "pg-oauth2-cc",
            "cc",
            {
                "type": "OAUTH2_CC",
                "token": secrets["cc_token"],
                "client_id": "cc-id",
                "client_secret": secrets["cc_secret"],
            },
        ),
        (
            "pg-trello",
            "o1",
            {"type": "OAUTH1", "oauth_token": "ot", "oauth_token_secret": secrets["oauth1"]},
        ),
        ("pg-api-key", "ak", {"type": "API_KEY", "apiKey": secrets["apikey"]}),
        ("pg-basic", "ba", {"type": "BASIC", "username": "user", "password": secrets["password"]}),
    ]
    for pck, cid, credentials in imports:
        body = _ok(
            client.post(
                "/connections",
                json={
                    "provider_config_key": pck,
                    "connection_id": cid,
                    "credentials": credentials,
                    "tags": {"env": "prod" if cid in ("o2", "ak") else "dev"},
                    "end_user": {"id": f"user-{cid}", "organization": {"id": "org"}},
                },
            ),
            201,
        )
        assert body["credentials"]["type"] == credentials["type"]

    # Read: stripped by default, full with refresh_token=true, last_fetched_at stamped.
    pg_clock.advance(30)
    read = _ok(client.get("/connections/o2", params={"provider_config_key": "pg-oauth"}))
    assert read["credentials"]["access_token"] == secrets["at"]
    assert "refresh_token" not in read["credentials"]
    assert read["last_fetched_at"] == iso(pg_clock.now())
    full = _ok(
        client.get(
            "/connections/o2", params={"provider_config_key": "pg-oauth", "refresh_token": "true"}
        )
    )
    assert full["credentials"]["refresh_token"] == secrets["rt"]
    assert (
        _ok(client.get("/connections/ak", params={"provider_config_key": "pg-api-key"}))[
            "credentials"
        ]["apiKey"]
        == secrets["apikey"]
    )

    # List filters (tags are JSONB on PostgreSQL).
    listed = _ok(client.get("/connections", params={"tags[env]": "prod"}))["connections"]
    assert sorted(c["connection_id"] for c in listed) == ["ak", "o2"]
    listed = _ok(client.get("/connections", params={"integrationId": "pg-oauth,pg-basic"}))
    assert sorted(c["connection_id"] for c in listed["connections"]) == ["ba", "o2"]
    listed = _ok(client.get("/connections", params={"endUserOrganizationId": "org", "limit": "2"}))
    assert len(listed["connections"]) == 2

    # Metadata: replace, merge, and an all-or-nothing multi-id update.
    _ok(
        client.post(
            "/connections/metadata",
            json={"connection_id": "o2", "provider_config_key": "pg-oauth", "metadata": {"a": 1}},
        ),
        201,
    )
    _ok(
        client.patch(
            "/connections/metadata",
            json={"connection_id": ["o2"], "provider_config_key": "pg-oauth", "metadata": {"b": 2}},
        )
    )
    missing = client.patch(
        "/connections/metadata",
        json={
            "connection_id": ["o2", "ghost"],
            "provider_config_key": "pg-oauth",
            "metadata": {"c": 3},
        },
    )
    assert missing.status_code == 404
    meta = _ok(client.get("/connections/o2", params={"provider_config_key": "pg-oauth"}))
    assert meta["metadata"] == {"a": 1, "b": 2}

    # Patch, delete, re-import.
    _ok(
        client.patch(
            "/connections/o2",
            params={"provider_config_key": "pg-oauth"},
            json={"webhook_url_override": "https://hooks.example/pg"},
        )
    )
    _ok(client.delete("/connections/ba", params={"provider_config_key": "pg-basic"}))
    assert (
        client.get("/connections/ba", params={"provider_config_key": "pg-basic"}).status_code == 404
    )
    _ok(
        client.post(
            "/connections",
            json={
                "provider_config_key": "pg-basic",
                "connection_id": "ba",
                "credentials": {
                    "type": "BASIC",
                    "username": "user",
                    "password": secrets["password"],
                },
            },
        ),
        201,
    )

    # Rename an integration (re-keys its connections), then delete another.
    _ok(client.patch("/integrations/pg-oauth", json={"unique_key": "pg-oauth-2"}))
    moved = _ok(client.get("/connections/o2", params={"provider_config_key": "pg-oauth-2"}))
    assert moved["webhook_url_override"] == "https://hooks.example/pg"
    _ok(client.delete("/integrations/pg-trello"))
    assert (
        client.get("/connections/o1", params={"provider_config_key": "pg-trello"}).status_code
        == 400
    )

    # Nothing secret is stored in clear anywhere.
    dump = raw_dump(pg_runtime)
    assert "o2" in dump  # the dump does see the rows
    for name, value in secrets.items():
        assert value not in dump, f"{name} stored in clear"


def test_rejected_requests_change_nothing_on_postgres(
    pg_runtime: Runtime, pg_client: TestClient
) -> None:
    """Rejected imports and metadata updates leave every row untouched."""
    client = pg_client
    _ok(client.post("/integrations", json={"provider": "oauth2", "unique_key": "k"}))
    _ok(
        client.post(
            "/connections",
            json={
                "provider_config_key": "k",
                "connection_id": "c1",
                "credentials": {"type": "OAUTH2", "access_token": "a"},
            },
        ),
        201,
    )
    before = raw_dump(pg_runtime)
    rejected = [
        client.post(
            "/connections",
            json={
                "provider_config_key": "k",
                "connection_id": "c1",
                "credentials": {"type": "API_KEY", "apiKey": "x"},
            },
        ),
        client.post(
            "/connections",
            json={
                "provider_config_key": "k",
                "connection_id": "c1",
                "credentials": {"type": "OAUTH2", "access_token": "a", "expires_at": "never"},
            },
        ),
        client.post(
            "/connections/metadata",
            json={
                "connection_id": ["c1", "nope"],
                "provider_config_key": "k",
                "metadata": {"x": 1},
            },
        ),
        client.patch("/integrations/k", json={"unique_key": "bad/key"}),
    ]
    assert [r.status_code for r in rejected] == [400, 400, 404, 400]
    assert raw_dump(pg_runtime) == before


def test_health_on_postgres(pg_client: TestClient) -> None:
    """GET /health answers 200 against PostgreSQL."""
    assert _ok(pg_client.get("/health")) == {"status": "ok"}
