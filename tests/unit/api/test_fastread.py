"""The lean handler of GET /connection(s)/{id}: same answers as FastAPI's, only for plain inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from freshtoken.api import fastread

PCK = "oauth2-test"


def _request(path_id: str, query: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/connections/{path_id}",
        "query_string": query.encode(),
        "headers": [],
        "path_params": {"connectionId": path_id},
    }
    return Request(scope)


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
    assert fastread.plain_read(_request(path_id, query)) == expected


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
    monkeypatch.setattr(fastread, "plain_read", lambda _request: None)
    full = [client.get(url) for url in urls]
    assert [r.status_code for r in lean] == [200, 200, 404, 400]
    assert [(r.status_code, r.content) for r in lean] == [(r.status_code, r.content) for r in full]
