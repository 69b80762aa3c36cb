"""Scoped API keys and what an unauthenticated caller can learn (issue 10, row 13)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.support import SECRET_KEY, make_settings

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.apikeys import create_key
from freshtoken.cli import main
from freshtoken.runtime import Runtime, build_runtime


@pytest.fixture
def seeded(
    runtime: Runtime,
    make_integration: Callable[..., str],
    import_connection: Callable[..., dict[str, Any]],
) -> Runtime:
    """An integration "k" with a client secret and a connection "c1"."""
    make_integration("k")
    import_connection("c1", "k")
    return runtime


def _key(runtime: Runtime, scope: str, name: str | None = None) -> str:
    with runtime.store() as store:
        _, key = create_key(store.session, name=name or scope, scope=scope, now=runtime.clock.now())
    return key


def _as(app: FastAPI, key: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})


def _status(client: TestClient, method: str, url: str, **kw: Any) -> int:
    return client.request(method, url, **kw).status_code


NEW_CONNECTION = {
    "provider_config_key": "k",
    "connection_id": "c2",
    "credentials": {"type": "OAUTH2", "access_token": "at-2", "refresh_token": "rt-2"},
}


def test_read_key_fetches_connections_and_credentials_only(seeded: Runtime, app: FastAPI) -> None:
    """A read key lists and fetches connections with credentials; everything else is 403."""
    with _as(app, _key(seeded, "read")) as client:
        assert _status(client, "GET", "/connections") == 200
        one = client.get("/connections/c1", params={"provider_config_key": "k"})
        assert one.status_code == 200
        assert one.json()["credentials"]["access_token"] == "at-secret-0001"
        for method, url, kw in [
            ("GET", "/integrations", {}),
            ("GET", "/integrations/k?include=credentials", {}),
            ("GET", "/providers", {}),
            ("POST", "/connections", {"json": NEW_CONNECTION}),
            ("DELETE", "/connections/c1?provider_config_key=k", {}),
            ("POST", "/connections/c1/refresh?provider_config_key=k", {}),
            ("PATCH", "/integrations/k", {"json": {"display_name": "x"}}),
        ]:
            response = client.request(method, url, **kw)
            assert response.status_code == 403, (method, url)
            assert response.json()["error"]["code"] == "forbidden"
            assert "client-secret-value" not in response.text


def test_write_key_writes_connections_but_never_reads_client_secrets(
    seeded: Runtime, app: FastAPI
) -> None:
    """A write key imports connections and lists integrations, but no client secret or
    integration change."""
    with _as(app, _key(seeded, "write")) as client:
        assert _status(client, "POST", "/connections", json=NEW_CONNECTION) == 201
        assert _status(client, "GET", "/integrations") == 200
        assert _status(client, "GET", "/integrations/k?include=credentials") == 403
        repeated = "/integrations/k?include=credentials&include=webhook"
        assert _status(client, "GET", repeated) == 403
        assert _status(client, "DELETE", "/integrations/k") == 403


def test_admin_keys_overlap_for_rotation(seeded: Runtime, app: FastAPI) -> None:
    """Two admin keys work at once; revoking the old one leaves the new one (and the settings
    key) working: rotation without downtime."""
    old, new = _key(seeded, "admin", "old-admin"), _key(seeded, "admin", "new-admin")
    with _as(app, old) as c_old, _as(app, new) as c_new, _as(app, SECRET_KEY) as c_settings:
        for client in (c_old, c_new, c_settings):
            assert _status(client, "GET", "/integrations/k?include=credentials") == 200
        with seeded.store() as store:
            from freshtoken.apikeys import revoke_key

            assert [r.name for r in revoke_key(store.session, "old-admin", seeded.clock.now())]
        app.state.key_ring.invalidate()  # what the 2-second cache period does on its own
        assert c_old.get("/connections").status_code == 401
        assert _status(c_new, "GET", "/integrations/k?include=credentials") == 200
        assert _status(c_settings, "GET", "/connections") == 200


def test_keys_are_stored_hashed(seeded: Runtime) -> None:
    """No column of api_keys holds the key, or more of it than a short hint."""
    key = _key(seeded, "read")
    with seeded.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_keys"))]
    assert rows
    dumped = repr(rows)
    assert key not in dumped
    assert key[:20] not in dumped


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    """The CLI configures logging; put pytest's handlers and registered secrets back."""
    import logging

    import structlog

    from freshtoken import logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    config = structlog.get_config()
    registered = set(logs._registered)
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.configure(**config)
    logs._registered.clear()
    logs._registered.update(registered)


@pytest.mark.usefixtures("_restore_logging")
def test_cli_create_list_revoke(seeded: Runtime, app: FastAPI, tmp_path: Path) -> None:
    """`keys create` prints the key once, `keys list` never shows it, `keys revoke` ends it."""
    env = {
        "FRESHTOKEN_DATABASE_URL": seeded.settings.resolved_database_url,
        "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
        "FRESHTOKEN_ENCRYPTION_KEY": seeded.settings.encryption_key.get_secret_value(),  # type: ignore[union-attr]
        "FRESHTOKEN_DATA_DIR": str(tmp_path),
        "FRESHTOKEN_LOG_LEVEL": "WARNING",
        "FRESHTOKEN_REDIS_URL": "",
    }
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--scope", "read", "--name", "ci"], env=env)
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout.splitlines()[0])
    assert made["scope"] == "read" and made["key"].startswith("ft_read_")
    with _as(app, made["key"]) as client:
        assert _status(client, "GET", "/connections") == 200
        listed = runner.invoke(main, ["keys", "list"], env=env)
        assert listed.exit_code == 0
        assert made["key"] not in listed.output
        assert json.loads(listed.stdout.splitlines()[0])["name"] == "ci"
        revoked = runner.invoke(main, ["keys", "revoke", "ci"], env=env)
        assert revoked.exit_code == 0, revoked.output
        app.state.key_ring.invalidate()
        assert _status(client, "GET", "/connections") == 401
    again = runner.invoke(main, ["keys", "revoke", "ci"], env=env)
    assert again.exit_code != 0


@pytest.mark.usefixtures("seeded")
def test_unknown_key_does_not_hit_the_database_per_request(app: FastAPI) -> None:
    """Random bearer tokens are answered from the cached key table (at most one reload)."""
    ring = app.state.key_ring
    calls = 0
    reload = ring.reload

    def counting() -> None:
        nonlocal calls
        calls += 1
        reload()

    ring.reload = counting
    with TestClient(app) as client:
        for i in range(20):
            response = client.get("/connections", headers={"Authorization": f"Bearer nope-{i}"})
            assert response.status_code == 401
    assert calls <= 1


# -- row 13: what an unauthenticated caller learns ---------------------------------------------


@pytest.fixture
def production_app(tmp_path: Path) -> Iterator[FastAPI]:
    """The API in production (docs not public by default)."""
    settings = make_settings(
        tmp_path, f"sqlite:///{(tmp_path / 'p.db').as_posix()}", env="production"
    )
    rt = build_runtime(settings, with_refresher=False)
    migrate.upgrade(rt.engine)
    yield create_app(rt)
    rt.close()


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/redoc"),
        ("PUT", "/connections"),
        ("PUT", "/integrations/k"),
        ("GET", "/no-such-route"),
    ],
)
def test_production_answers_401_to_unauthenticated_docs_unknown_routes_and_methods(
    production_app: FastAPI, method: str, url: str
) -> None:
    """Without a key: /docs, /openapi.json, unknown routes and unsupported methods are 401
    (were 200 and 405)."""
    with TestClient(production_app) as client:
        response = client.request(method, url)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_auth_header"


def test_public_route_keeps_405_for_other_methods(production_app: FastAPI) -> None:
    """/health is public: another method on it is 405 with or without a key."""
    with TestClient(production_app) as client:
        assert client.post("/health").status_code == 405


def test_with_a_key_unknown_routes_and_methods_keep_404_and_405(production_app: FastAPI) -> None:
    """An authenticated caller still gets the precise answer."""
    with _as(production_app, SECRET_KEY) as client:
        assert client.get("/no-such-route").status_code == 404
        assert client.put("/connections").status_code == 405
        assert client.get("/openapi.json").status_code == 404


def test_public_docs_setting(tmp_path: Path) -> None:
    """FRESHTOKEN_PUBLIC_DOCS=true serves the docs in production; development serves them by
    default."""
    for overrides in ({"env": "production", "public_docs": True}, {}):
        settings = make_settings(
            tmp_path, f"sqlite:///{(tmp_path / 'd.db').as_posix()}", **overrides
        )
        rt = build_runtime(settings, with_refresher=False)
        try:
            with TestClient(create_app(rt)) as client:
                assert client.get("/openapi.json").status_code == 200
                assert client.get("/docs").status_code == 200
        finally:
            rt.close()
