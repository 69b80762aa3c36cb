"""The lean handler of GET /connection(s)/{id}: same answers as FastAPI's, only for plain inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from fastapi.testclient import TestClient

from freshtoken.api import fastread

PCK = "oauth2-test"


def _query(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


@pytest.mark.parametrize(
    ("path_id", "query", "expected"),
    [
        ("c1", f"provider_config_key={PCK}", ("c1", PCK, False, False, False)),
        ("c/1", f"provider_config_key={PCK}&force_refresh=true", ("c/1", PCK, True, False, False)),
        ("c1", f"provider_config_key={PCK}&refresh_token=true", ("c1", PCK, False, True, False)),
        ("c1", f"provider_config_key={PCK}&force_refresh=True", None),  # validator's answer
        ("c1", f"provider_config_key={PCK}&provider_config_key={PCK}", None),  # repeated
        ("c1", f"provider_config_key={PCK}&extra=1", None),  # unknown parameter
        ("c1", "", None),  # missing key
        ("c1", "provider_config_key=a%0A", None),  # "$" must not match before a newline
        ("c%1", f"provider_config_key={PCK}", None),  # outside the id pattern
        ("c" * 256, f"provider_config_key={PCK}", None),  # too long
    ],
)
def test_only_plain_inputs_take_the_lean_handler(
    path_id: str, query: str, expected: tuple[str, str, bool, bool, bool] | None
) -> None:
    """Anything a validator could refuse goes to FastAPI's handler, so errors stay identical."""
    assert fastread.plain_read(unquote(path_id), _query(query)) == expected


def test_lean_and_fastapi_handlers_answer_alike(
    client: TestClient,
    make_integration: Callable[..., str],
    import_connection: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found, missing, unknown key, with and without refresh tokens: byte-identical answers."""
    make_integration()
    import_connection("c1")
    urls = [
        f"/connections/c1?provider_config_key={PCK}",
        f"/connection/c1?provider_config_key={PCK}&refresh_token=true",
        f"/connections/nope?provider_config_key={PCK}",
        "/connections/c1?provider_config_key=unknown",
    ]
    lean = [client.get(url) for url in urls]
    unauthenticated = client.get(urls[0], headers={"Authorization": "Bearer wrong"})
    assert unauthenticated.status_code == 401  # the lean handler authenticates too
    monkeypatch.setattr(fastread, "plain_read", lambda _id, _query: None)
    full = [client.get(url) for url in urls]
    assert [r.status_code for r in lean] == [200, 200, 404, 400]
    assert [(r.status_code, r.content) for r in lean] == [(r.status_code, r.content) for r in full]

    def headers(response: Any) -> dict[str, str]:
        return {k: v for k, v in response.headers.items() if k != "x-request-id"}

    assert [headers(r) for r in lean] == [headers(r) for r in full]


@pytest.mark.parametrize(
    ("path", "lean"),
    [
        ("/connections/c1", True),
        ("/connections/a/b", True),  # ids may hold "/" (the route's path convertor)
        ("/connections/c1/refresh", True),  # a GET of it is a read, as on FastAPI's router
        ("/connection/c1", True),
        ("/connection/c1/metadata", False),  # the legacy metadata URL: FastAPI answers 405
        ("/connections", False),  # the list
        ("/connectionsx/c1", False),
    ],
)
def test_read_route_for_mirrors_the_router(path: str, lean: bool) -> None:
    """Only the paths FastAPI would route to a read take the lean path."""
    routes = {template: object() for template in fastread.READ_TEMPLATES}
    assert (fastread.read_route_for(path, routes) is not None) is lean  # type: ignore[arg-type]


def test_requests_the_lean_path_leaves_to_fastapi_answer_alike(
    client: TestClient,
    make_integration: Callable[..., str],
    import_connection: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read with a body header, a huge header section, a bad flag or a 405 path goes through
    FastAPI and keeps its answer (the lean path is never asked)."""
    make_integration()
    import_connection("c1")
    asked: list[str] = []
    real = fastread.plain_read
    monkeypatch.setattr(
        fastread, "plain_read", lambda cid, query: asked.append(cid) or real(cid, query)
    )
    url = f"/connections/c1?provider_config_key={PCK}"
    assert client.get(url, headers={"content-length": "0"}).status_code == 200
    assert client.get(url, headers={"x-big": "a" * 20_000}).status_code == 431
    assert client.get(url + "&force_refresh=yes").status_code == 400
    assert client.get(f"/connection/c1/metadata?provider_config_key={PCK}").status_code == 405
    assert asked == ["c1"]  # only the bad-flag read was looked at, and refused


def test_lean_path_errors_use_the_apps_handlers(
    client: TestClient,
    make_integration: Callable[..., str],
    import_connection: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database error on the lean path is the app's 503 envelope, and an unexpected error its
    generic 500, with the request id header, exactly as on FastAPI's route."""
    from sqlalchemy.exc import OperationalError

    make_integration()
    import_connection("c1")
    url = f"/connections/c1?provider_config_key={PCK}"

    async def db_down(*_args: Any) -> None:
        raise OperationalError("SELECT", None, OSError("refused"))

    monkeypatch.setattr(client.app.state.runtime.reader, "fetch_for_read", db_down)  # type: ignore[attr-defined]
    lean = client.get(url)
    monkeypatch.setattr(fastread, "plain_read", lambda _id, _query: None)
    full = client.get(url)
    assert (lean.status_code, lean.content) == (full.status_code, full.content)
    assert lean.status_code == 503 and "x-request-id" in lean.headers
    monkeypatch.undo()

    async def boom(*_args: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(client.app.state.runtime.reader, "fetch_for_read", boom)  # type: ignore[attr-defined]
    with TestClient(client.app, raise_server_exceptions=False) as quiet:  # type: ignore[arg-type]
        quiet.headers.update(client.headers)
        answer = quiet.get(url)
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "server_error"
