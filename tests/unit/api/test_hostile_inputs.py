"""Hostile requests: oversized, malformed, traversal, injection and unauthenticated inputs.

Every request here is refused. Each answer must be a 4xx (never a 5xx) whose body is the error
envelope (``{"error": {"code", "message", "payload"?, "errors"?}}``) with no traceback text, and
``snapshot()`` (every stored row) must be what it was before the request (the ``rejected``
fixture checks all of that).

Most tests run in-process (``TestClient``). A module-scoped fixture also starts a real
``freshtoken api`` (uvicorn) on a free port, because framing and header limits belong to the
server and the in-process client has none. uvicorn's default parser (httptools) has no header
size limit at all, so the 16 KiB limit (Node's, hence Nango's; 431) is the app's own and is
checked both ways. Requests uvicorn itself refuses (bare CR, obs-fold, NUL in a header, a bad
Content-Length) never reach the app, so their 400 is uvicorn's plain text, not the envelope; for
those "a 4xx, promptly, and the server still serves and changed nothing" is what is checked.

NUL (U+0000) is refused in every body string and query parameter: PostgreSQL stores it in neither
text nor jsonb, and it used to surface as 503 database_unavailable (checked on PostgreSQL itself
in tests/integration/test_hostile_postgres.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.support import ENCRYPTION_KEY, SECRET_KEY, assert_envelope

from freshtoken.api.app import MAX_BODY_BYTES, MAX_HEADER_BYTES
from freshtoken.runtime import Runtime

Rows = dict[str, list[tuple[Any, ...]]]
Reject = Callable[..., dict[str, Any]]

PCK = "provider_config_key=oauth2-test"
TWO_MIB = 2 * 1024 * 1024
JSON = {"Content-Type": "application/json"}

# Every route that reads a body, with a URL whose path and query are valid.
WRITE_ROUTES = [
    ("POST", "/connections"),
    ("POST", "/connection"),
    ("PATCH", f"/connections/conn-1?{PCK}"),
    ("POST", "/connections/metadata"),
    ("PATCH", "/connections/metadata"),
    ("POST", "/connection/metadata"),
    ("PATCH", "/connection/metadata"),
    ("POST", f"/connection/conn-1/metadata?{PCK}"),
    ("PATCH", f"/connection/conn-1/metadata?{PCK}"),
    ("POST", "/integrations"),
    ("PATCH", "/integrations/oauth2-test"),
]
METADATA_BODY = {"connection_id": "conn-1", "provider_config_key": "oauth2-test", "metadata": {}}
# One valid body per write route: only the part under test is ever wrong.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/connections"): {
        "provider_config_key": "oauth2-test",
        "connection_id": "new-1",
        "credentials": {"type": "OAUTH2", "access_token": "at-new"},
    },
    ("POST", "/integrations"): {"provider": "oauth2", "unique_key": "new-key"},
    ("PATCH", "/integrations/oauth2-test"): {"display_name": "Renamed"},
    ("PATCH", f"/connections/conn-1?{PCK}"): {"tags": {"a": "b"}},
    ("POST", f"/connection/conn-1/metadata?{PCK}"): {"k": "v"},
    ("PATCH", f"/connection/conn-1/metadata?{PCK}"): {"k": "v"},
}
VALID_BODIES[("POST", "/connection")] = VALID_BODIES[("POST", "/connections")]
for _route in WRITE_ROUTES:
    VALID_BODIES.setdefault(_route, METADATA_BODY)


def _ids(routes: list[tuple[str, str]]) -> list[str]:
    return [f"{method} {url.split('?')[0]}" for method, url in routes]


@pytest.fixture
def seeded(
    make_integration: Callable[..., str],
    import_connection: Callable[..., dict[str, Any]],
    snapshot: Callable[[], Rows],
) -> Rows:
    """An integration and two connections; returns the rows every rejection must leave alone."""
    make_integration()
    import_connection("conn-1")
    import_connection("conn-2", metadata={"team": "a"}, tags={"env": "prod"})
    return snapshot()


@pytest.fixture
def rejected(seeded: Rows, snapshot: Callable[[], Rows], runtime: Runtime) -> Reject:
    """``rejected(response, status, code=None)``: the envelope, and no stored row changed."""

    def check(response: Any, status: int | set[int], code: str | None = None) -> dict[str, Any]:
        error = assert_envelope(response, status, code)
        runtime.fetch_stamps.flush()  # read stamps are written behind reads: include them
        assert snapshot() == seeded, "a rejected request changed stored rows"
        return error

    return check


# -- body size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), WRITE_ROUTES, ids=_ids(WRITE_ROUTES))
def test_2mib_body_is_413(client: TestClient, rejected: Reject, method: str, url: str) -> None:
    """A 2 MiB JSON body on any write route answers 413 payload_too_large."""
    body = b'{"metadata": {"x": "' + b"x" * TWO_MIB + b'"}}'
    response = client.request(method, url, content=body, headers=JSON)
    rejected(response, 413, "payload_too_large")


def test_2mib_streamed_body_is_413(client: TestClient, rejected: Reject) -> None:
    """A 2 MiB body sent chunked, without Content-Length, is cut off at 1 MiB with 413."""

    def chunks() -> Iterator[bytes]:
        yield b'{"metadata": {"x": "'
        for _ in range(32):
            yield b"x" * (64 * 1024)
        yield b'"}}'

    response = client.post("/connections/metadata", content=chunks(), headers=JSON)
    rejected(response, 413, "payload_too_large")


def test_oversized_body_is_refused_before_authentication(
    anon_client: TestClient, rejected: Reject
) -> None:
    """A declared 2 MiB body is refused with 413 before the credentials are even looked at."""
    response = anon_client.post("/connections", content=b"x" * TWO_MIB, headers=JSON)
    assert MAX_BODY_BYTES < TWO_MIB
    rejected(response, 413, "payload_too_large")


# -- header size (in-process) -------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Padding", "Authorization", "Provider-Config-Key"])
def test_64kib_header_is_431(
    client: TestClient, anon_client: TestClient, rejected: Reject, header: str
) -> None:
    """A 64 KiB header answers 431 header_too_large, on an authenticated or a public route."""
    value = "Bearer " + "k" * 65536 if header == "Authorization" else "v" * 65536
    url = f"/connection/conn-1/metadata?{PCK}"
    rejected(client.post(url, json={"k": "v"}, headers={header: value}), 431, "header_too_large")
    rejected(anon_client.get("/health", headers={header: value}), 431, "header_too_large")


def test_headers_under_the_limit_are_served(client: TestClient, seeded: Rows) -> None:
    """Headers well under 16 KiB (an 8 KiB one) do not trip the limit."""
    assert MAX_HEADER_BYTES == 16 * 1024
    response = client.get("/connections", headers={"X-Padding": "v" * 8192})
    assert response.status_code == 200
    assert len(response.json()["connections"]) == len(seeded["connections"])


# -- malformed JSON -----------------------------------------------------------------------------


def _nested(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


@pytest.mark.parametrize(("method", "url"), WRITE_ROUTES, ids=_ids(WRITE_ROUTES))
@pytest.mark.parametrize("shape", ["arrays", "objects", "inside-metadata"])
def test_10k_deep_json_is_400(
    client: TestClient, rejected: Reject, method: str, url: str, shape: str
) -> None:
    """JSON nested 10,000 levels deep answers 400 invalid_body (no RecursionError, no 500)."""
    if shape == "arrays":
        body = _nested(10_000, b"[", b"]")
    elif shape == "objects":
        body = _nested(10_000, b'{"a":', b"}").replace(b"}", b"", 1) + b"1}"
    else:
        body = b'{"metadata": {"a": ' + _nested(10_000, b"[", b"]") + b"}}"
    response = client.request(method, url, content=body, headers=JSON)
    rejected(response, 400, "invalid_body")


@pytest.mark.parametrize(("method", "url"), WRITE_ROUTES, ids=_ids(WRITE_ROUTES))
def test_invalid_utf8_is_400(client: TestClient, rejected: Reject, method: str, url: str) -> None:
    """A body with invalid UTF-8 bytes answers 400 invalid_body."""
    response = client.request(method, url, content=b'{"k": "\xff\xfe\xc3\x28"}', headers=JSON)
    rejected(response, 400, "invalid_body")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
@pytest.mark.parametrize(("method", "url"), WRITE_ROUTES[3:9], ids=_ids(WRITE_ROUTES[3:9]))
def test_nan_and_infinity_are_400(
    client: TestClient, rejected: Reject, method: str, url: str, literal: bytes
) -> None:
    """NaN, Infinity and numbers overflowing a double answer 400 invalid_body (not stored)."""
    if "/metadata?" in url:
        body = b'{"x": ' + literal + b"}"
    else:
        body = (
            b'{"connection_id": "conn-1", "provider_config_key": "oauth2-test", '
            b'"metadata": {"x": ' + literal + b"}}"
        )
    response = client.request(method, url, content=body, headers=JSON)
    rejected(response, 400, "invalid_body")


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/connections/metadata", {**METADATA_BODY, "metadata": {"x": "a\x00b"}}),
        ("POST", "/connections/metadata", {**METADATA_BODY, "metadata": {"a\x00": 1}}),
        ("PATCH", "/connections/metadata", {**METADATA_BODY, "metadata": {"x": ["\x00"]}}),
        ("POST", f"/connection/conn-1/metadata?{PCK}", {"x": "\x00"}),
        ("PATCH", f"/connections/conn-1?{PCK}", {"tags": {"env": "a\x00"}}),
        ("PATCH", f"/connections/conn-1?{PCK}", {"end_user": {"id": "u\x00"}}),
        ("PATCH", "/integrations/oauth2-test", {"display_name": "a\x00"}),
        (
            "POST",
            "/integrations",
            {"provider": "oauth2", "unique_key": "k2", "display_name": "\x00"},
        ),
        (
            "POST",
            "/connections",
            {
                "provider_config_key": "oauth2-test",
                "connection_id": "new-1",
                "credentials": {"type": "OAUTH2", "access_token": "at\x00"},
            },
        ),
    ],
)
def test_nul_in_a_body_string_is_400(
    client: TestClient, rejected: Reject, method: str, url: str, body: dict[str, Any]
) -> None:
    """A NUL character (JSON ``\\u0000``) in any body string or key answers 400 invalid_body."""
    response = client.request(method, url, content=orjson.dumps(body), headers=JSON)
    error = rejected(response, 400, "invalid_body")
    assert "NUL" in error["errors"][0]["message"]


@pytest.mark.parametrize(
    "query",
    [
        "connectionId=a%00",
        "integrationId=oauth2-test%00",
        "search=%00",
        "endUserId=u%00",
        "tags[env]=prod%00",
        "tags[e%00nv]=prod",
    ],
)
def test_nul_in_a_query_parameter_is_400(client: TestClient, rejected: Reject, query: str) -> None:
    """A NUL character in a query parameter's name or value answers 400 invalid_query_params."""
    rejected(client.get(f"/connections?{query}"), 400, "invalid_query_params")


# -- content types ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), WRITE_ROUTES, ids=_ids(WRITE_ROUTES))
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart", None],
)
def test_wrong_content_type_is_400(
    client: TestClient, rejected: Reject, method: str, url: str, content_type: str | None
) -> None:
    """A valid JSON body sent as text, a form, XML, multipart or untyped answers 400."""
    payload = orjson.dumps(VALID_BODIES[(method, url)])
    if content_type == "multipart":
        response = client.request(
            method, url, files={"body": ("body.json", payload, "application/json")}
        )
    else:
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.request(method, url, content=payload, headers=headers)
    rejected(response, 400, "invalid_body")


@pytest.mark.usefixtures("seeded")
def test_valid_bodies_are_accepted(client: TestClient) -> None:
    """Control: each write route accepts its VALID_BODIES body as application/json."""
    for method, url in WRITE_ROUTES:
        response = client.request(method, url, json=VALID_BODIES[(method, url)])
        assert response.status_code in {200, 201}, (method, url, response.text)


# -- path parameters ----------------------------------------------------------------------------

LONG = "a" * 10_000
TRAVERSAL = "..%2F..%2Fetc%2Fpasswd"
ODD_PATHS = [
    ("GET", f"/connections/{TRAVERSAL}?{PCK}", 404, "not_found"),
    ("DELETE", f"/connections/{TRAVERSAL}?{PCK}", 404, "unknown_connection"),
    ("PATCH", f"/connections/{TRAVERSAL}?{PCK}", 404, "unknown_connection"),
    ("GET", f"/connection/{TRAVERSAL}?{PCK}", 404, "not_found"),
    # Ids are opaque: ``conn-2/../conn-1`` is not normalised into ``conn-1``.
    ("GET", f"/connections/conn-2%2F..%2Fconn-1?{PCK}", 404, "not_found"),
    ("DELETE", f"/connections/conn-2%2F..%2Fconn-1?{PCK}", 404, "unknown_connection"),
    ("GET", f"/connections/%00?{PCK}", 400, "invalid_uri_params"),
    ("GET", f"/connections/conn-1%00?{PCK}", 400, "invalid_uri_params"),
    ("DELETE", f"/connections/conn-1%00?{PCK}", 400, "invalid_uri_params"),
    ("GET", f"/connections/{LONG}?{PCK}", 400, "invalid_uri_params"),
    ("DELETE", f"/connections/{LONG}?{PCK}", 400, "invalid_uri_params"),
    ("POST", f"/connections/{LONG}/refresh?{PCK}", 400, "invalid_uri_params"),
    # A Cyrillic es, fullwidth letters and a zero-width space look like conn-1 but are not ASCII.
    ("GET", f"/connections/\u0441onn-1?{PCK}", 400, "invalid_uri_params"),
    ("DELETE", f"/connections/\u0441onn-1?{PCK}", 400, "invalid_uri_params"),
    ("GET", f"/connections/\uff43\uff4f\uff4e\uff4e-1?{PCK}", 400, "invalid_uri_params"),
    ("GET", f"/connections/conn\u200b-1?{PCK}", 400, "invalid_uri_params"),
    (
        "GET",
        "/connections/conn-1?provider_config_key=\u043eauth2-test",
        400,
        "invalid_query_params",
    ),
    ("GET", "/integrations/\u043eauth2-test", 400, "invalid_uri_params"),
    ("DELETE", "/integrations/\u043eauth2-test", 400, "invalid_uri_params"),
    ("DELETE", f"/integrations/{TRAVERSAL}", 404, "not_found"),
    ("GET", "/integrations/%2e%2e", 404, "not_found"),
    ("DELETE", f"/integrations/{LONG}", 400, "invalid_uri_params"),
    ("GET", f"/providers/{TRAVERSAL}", 404, "not_found"),
    ("GET", f"/providers/{LONG}", 400, "invalid_uri_params"),
    ("GET", "/providers/%00", 404, "not_found"),
]


@pytest.mark.parametrize(("method", "url", "status", "code"), ODD_PATHS)
def test_traversal_nul_long_and_homoglyph_ids(
    client: TestClient, rejected: Reject, method: str, url: str, status: int, code: str
) -> None:
    """Traversal, NUL, 10k-character and look-alike ids answer 400 or 404, never touch a row."""
    body = VALID_BODIES[("PATCH", f"/connections/conn-1?{PCK}")] if method == "PATCH" else None
    rejected(client.request(method, url, json=body), status, code)


# -- query strings ------------------------------------------------------------------------------

QUERY_ROUTES = [
    ("GET", "/connections?"),
    ("GET", "/connection?"),
    ("GET", f"/connections/conn-1?{PCK}&"),
    ("GET", f"/connection/conn-1?{PCK}&"),
    ("PATCH", f"/connections/conn-1?{PCK}&"),
    ("DELETE", f"/connections/conn-1?{PCK}&"),
    ("DELETE", f"/connection/conn-1?{PCK}&"),
    ("POST", f"/connections/conn-1/refresh?{PCK}&"),
    ("POST", "/connections?"),
    ("POST", "/connection?"),
    ("POST", "/connections/metadata?"),
    ("PATCH", "/connections/metadata?"),
    ("POST", "/connection/metadata?"),
    ("PATCH", "/connection/metadata?"),
    ("GET", "/integrations?"),
    ("POST", "/integrations?"),
    ("GET", "/integrations/oauth2-test?"),
    ("PATCH", "/integrations/oauth2-test?"),
    ("DELETE", "/integrations/oauth2-test?"),
    ("GET", "/providers?"),
    ("GET", "/providers/github?"),
]


def _valid_body(method: str, url: str) -> dict[str, Any] | None:
    base = url.split("&")[0].rstrip("?")
    return VALID_BODIES.get((method, base)) if method in {"POST", "PATCH"} else None


@pytest.mark.parametrize(("method", "url"), QUERY_ROUTES, ids=_ids(QUERY_ROUTES))
def test_unknown_query_parameter_is_400(
    client: TestClient, rejected: Reject, method: str, url: str
) -> None:
    """An unknown query parameter answers 400 invalid_query_params naming it (writes included).

    Not covered: /health (public, takes nothing) and the legacy /connection/{id}/metadata routes,
    whose Nango handler reads provider_config_key from the query and ignores the rest.
    """
    response = client.request(method, url + "bogus=1", json=_valid_body(method, url))
    error = rejected(response, 400, "invalid_query_params")
    assert error["errors"][0]["path"] == ["bogus"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", f"/connections/conn-1?{PCK}&{PCK}"),
        ("DELETE", f"/connections/conn-1?{PCK}&{PCK}"),
        ("DELETE", f"/connection/conn-1?{PCK}&provider_config_key=other"),
        ("POST", f"/connections/conn-1/refresh?{PCK}&{PCK}"),
        ("GET", "/connections?limit=1&limit=2"),
        ("GET", "/connections?search=a&search=b"),
        ("GET", "/connections?tags[env]=prod&tags[env]=dev"),
        ("GET", "/providers?search=git&search=hub"),
    ],
)
def test_duplicate_query_parameter_is_400(
    client: TestClient, rejected: Reject, method: str, url: str
) -> None:
    """A scalar query parameter given twice answers 400 invalid_query_params."""
    rejected(client.request(method, url), 400, "invalid_query_params")


@pytest.mark.usefixtures("seeded")
def test_repeatable_include_is_accepted(client: TestClient) -> None:
    """``include`` is an array parameter: repeating it is not an error."""
    response = client.get("/integrations/oauth2-test?include=credentials&include=webhook")
    assert response.status_code == 200
    assert "credentials" in response.json()["data"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=2001",
        "limit=0",
        "limit=-1",
        "limit=" + "9" * 40,
        "limit=1e3",
        "limit=abc",
        "limit=",
        "page=-1",
        "page=1000001",
        "page=" + "9" * 40,
    ],
)
def test_out_of_range_limit_and_page_are_400(
    client: TestClient, rejected: Reject, query: str
) -> None:
    """Huge, negative, fractional or non-numeric limit/page values answer 400."""
    rejected(client.get(f"/connections?{query}"), 400, "invalid_query_params")


# -- injection-looking input --------------------------------------------------------------------

SQLI = "' OR 1=1 --"
SQLI_DROP = "x'; DROP TABLE connections; --"


@pytest.mark.parametrize("connection_id", [SQLI, SQLI_DROP, '" OR ""="', "1 OR 1=1"])
def test_sql_looking_connection_ids_are_plain_data(
    client: TestClient, rejected: Reject, connection_id: str
) -> None:
    """Ids that look like SQL are matched as text: 404 on read, patch, delete and metadata."""
    url = f"/connections/{connection_id}?{PCK}"
    rejected(client.get(url), 404, "not_found")
    rejected(client.patch(url, json={"tags": {"a": "b"}}), 404, "unknown_connection")
    rejected(client.delete(url), 404, "unknown_connection")
    rejected(
        client.post(
            "/connections/metadata", json={**METADATA_BODY, "connection_id": connection_id}
        ),
        404,
        "unknown_connection",
    )


@pytest.mark.parametrize(
    "query",
    [
        f"search={SQLI}",
        f"connectionId={SQLI}",
        f"integrationId=x' OR '1'='1,{SQLI_DROP}",
        f"endUserId={SQLI}",
        f"endUserOrganizationId={SQLI}",
        f"tags[env]={SQLI}",
    ],
)
def test_sql_looking_filters_match_nothing(
    client: TestClient, seeded: Rows, snapshot: Callable[[], Rows], query: str
) -> None:
    """List filters that look like SQL are compared as text: an empty list, nothing changed."""
    response = client.get(f"/connections?{query}")
    assert response.status_code == 200
    assert response.json() == {"connections": []}
    assert snapshot() == seeded


def test_sql_looking_keys_are_refused_by_their_pattern(
    client: TestClient, rejected: Reject
) -> None:
    """Integration keys cannot hold quotes or ``=``: SQL-looking keys are 400, not queries."""
    rejected(client.get(f"/connections/conn-1?provider_config_key={SQLI}"), 400)
    rejected(client.delete(f"/integrations/{SQLI}"), 400, "invalid_uri_params")
    body = {**METADATA_BODY, "provider_config_key": SQLI}
    rejected(client.post("/connections/metadata", json=body), 400, "invalid_body")


# -- header injection ---------------------------------------------------------------------------


def test_crlf_in_a_header_value_smuggles_nothing(
    anon_client: TestClient, client: TestClient, rejected: Reject, secret_key: str
) -> None:
    """A header value carrying CRLF and a second header stays one opaque value."""
    smuggled = f"x\r\nAuthorization: Bearer {secret_key}"
    response = anon_client.get("/connections", headers={"X-Note": smuggled})
    rejected(response, 401, "missing_auth_header")
    response = anon_client.get(
        "/connections", headers={"Authorization": f"Bearer {secret_key}\r\nX-Injected: 1"}
    )
    rejected(response, 401, "malformed_auth_header")
    assert "x-injected" not in response.headers
    response = client.post(
        "/connection/conn-1/metadata",
        json={"k": "v"},
        headers={"Provider-Config-Key": "oauth2-test\r\nX-Injected: 1"},
    )
    rejected(response, 400, "invalid_headers")
    assert "x-injected" not in response.headers


def test_crlf_in_a_query_value_is_400(client: TestClient, rejected: Reject) -> None:
    """An encoded CRLF in provider_config_key answers 400; nothing is echoed into headers."""
    response = client.get(
        "/connections/conn-1?provider_config_key=oauth2-test%0D%0AX-Injected:%201"
    )
    rejected(response, 400, "invalid_query_params")
    assert "x-injected" not in response.headers


# -- authentication comes first -----------------------------------------------------------------


def _operations(app: FastAPI) -> list[tuple[str, str, bool]]:
    document = app.openapi()
    return [
        (method.upper(), path, "security" in operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _garbage_url(path: str) -> str:
    """The path with every parameter invalid (non-ASCII, too long), plus an invalid query."""
    filled = path.replace("{connectionId}", "\u00e4" * 300)
    filled = filled.replace("{uniqueKey}", "\u00e4" * 300).replace("{provider}", "\u00e4" * 300)
    return f"{filled}?bogus=1&limit=abc&provider_config_key=%00&provider_config_key=x"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_auth_header"),
        ("Basic dXNlcjpwYXNz", "malformed_auth_header"),
        ("Bearer", "malformed_auth_header"),
        ("Bearer a b", "malformed_auth_header"),
        ("Bearer wrong-key", "unknown_account"),
        ("Bearer ' OR 1=1 --", "malformed_auth_header"),
    ],
)
def test_every_route_answers_401_before_validating_anything(
    app: FastAPI, anon_client: TestClient, rejected: Reject, authorization: str | None, code: str
) -> None:
    """Bad credentials get 401 on every secured operation, whatever the (invalid) input."""
    operations = _operations(app)
    assert {(m, p) for m, p, secured in operations if not secured} == {("GET", "/health")}
    headers = {"Content-Type": "text/plain"}
    if authorization is not None:
        headers["Authorization"] = authorization
    for method, path, secured in operations:
        if not secured:
            continue
        response = anon_client.request(
            method, _garbage_url(path), content=b"{not json", headers=headers
        )
        rejected(response, 401, code)
        assert response.headers["www-authenticate"] == "Bearer", (method, path)


# -- a real server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    env.update(
        {
            "FRESHTOKEN_DATA_DIR": str(data_dir),
            "FRESHTOKEN_DATABASE_URL": f"sqlite:///{(data_dir / 'api.db').as_posix()}",
            "FRESHTOKEN_SECRET_KEY": SECRET_KEY,
            "FRESHTOKEN_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "FRESHTOKEN_LOG_FORMAT": "json",
            "FRESHTOKEN_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class RawResponse:
    """A response read off a socket: status, lower-cased headers, body."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.content = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_code = int(lines[0].split(" ")[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode("utf-8", "replace")


class LiveServer:
    """``freshtoken api`` in a subprocess (its own session), killed by pid on teardown."""

    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.env = _server_env(data_dir)
        self.log_path = data_dir / "api.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.seeded: Any = None

    def start(self) -> None:
        """Migrate, start uvicorn, and wait (at most 30 s) until /health answers."""
        cli = [sys.executable, "-m", "freshtoken.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=self.env, check=True, timeout=60)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [*cli, "api", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, self.log_path.read_text(errors="replace")[-2000:]
            with contextlib.suppress(OSError, ValueError, IndexError):
                if self.request(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError("freshtoken api did not answer /health within 30 s")

    def stop(self) -> None:
        """Terminate the server process (then kill it if it lingers)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def request(self, head: bytes, body: bytes = b"", timeout: float = 10.0) -> RawResponse:
        """Send raw bytes (``Connection: close`` is added) and read the whole answer.

        Fails, rather than hangs, when nothing complete arrives within ``timeout`` seconds.
        """
        assert head.endswith(b"\r\n\r\n")
        data = head[:-2] + b"Connection: close\r\n\r\n" + body
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            with contextlib.suppress(ConnectionError):  # the server may answer before reading all
                sock.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
                assert time.monotonic() - started < timeout, "the server kept the socket open"
        raw = b"".join(chunks)
        assert raw, "the server closed the connection without answering"
        return RawResponse(raw)

    def authed(self, method: str, target: str, *headers: bytes, body: bytes = b"") -> RawResponse:
        """A request with the secret key, extra header lines, and a JSON body if given."""
        lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: t", b"Authorization: Bearer "]
        lines[2] += SECRET_KEY.encode()
        lines.extend(headers)
        if body:
            lines += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
        return self.request(b"\r\n".join(lines) + b"\r\n\r\n", body)

    def listing(self) -> Any:
        """``GET /connections`` as parsed JSON (what every refused request must leave alone)."""
        return orjson.loads(self.authed("GET", "/connections").content)

    def server_errors(self) -> list[str]:
        """Log lines about an exception escaping the app (there must be none)."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "api.error" in line or "Traceback" in line]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real ``freshtoken api`` on a free port, with integration ``oauth2-test`` and conn-1."""
    server = LiveServer(tmp_path_factory.mktemp("live-api"))
    try:
        server.start()
        integration = orjson.dumps({"provider": "oauth2", "unique_key": "oauth2-test"})
        assert server.authed("POST", "/integrations", body=integration).status_code == 200
        connection = orjson.dumps(
            {
                "provider_config_key": "oauth2-test",
                "connection_id": "conn-1",
                "credentials": {"type": "OAUTH2", "access_token": "at-live"},
            }
        )
        assert server.authed("POST", "/connections", body=connection).status_code == 201
        server.seeded = server.listing()
        yield server
    finally:
        server.stop()


def test_real_server_answers_a_100kib_header_with_431(live_server: LiveServer) -> None:
    """Over a socket, a 100 KiB header answers 431 at once, on public and secured routes."""
    big = b"X-Padding: " + b"v" * (100 * 1024)
    assert_envelope(live_server.authed("GET", "/connections", big), 431, "header_too_large")
    health = live_server.request(b"GET /health HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n\r\n")
    assert_envelope(health, 431, "header_too_large")
    key = b"Authorization: Bearer " + b"k" * (100 * 1024)
    response = live_server.request(b"GET /connections HTTP/1.1\r\nHost: t\r\n" + key + b"\r\n\r\n")
    assert_envelope(response, 431, "header_too_large")
    assert not live_server.server_errors()
    assert live_server.listing() == live_server.seeded


def test_real_server_refuses_a_2mib_body_without_reading_it(live_server: LiveServer) -> None:
    """Over a socket, a declared 2 MiB body answers 413 payload_too_large, without a hang."""
    body = b'{"metadata": {"x": "' + b"x" * TWO_MIB + b'"}}'
    response = live_server.authed("POST", "/connections/metadata", body=body)
    assert_envelope(response, 413, "payload_too_large")
    assert live_server.listing() == live_server.seeded


@pytest.mark.parametrize(
    "target",
    [
        f"/connections/../../etc/passwd?{PCK}",
        f"/connections/{TRAVERSAL}?{PCK}",
        f"/connections/conn-2/../conn-1?{PCK}",
        f"/connections/%2e%2e/%2e%2e/etc/passwd?{PCK}",
    ],
)
def test_real_server_treats_raw_traversal_as_an_id(live_server: LiveServer, target: str) -> None:
    """Raw, unnormalised ``..`` segments are part of the id: 404 on read and delete."""
    assert_envelope(live_server.authed("GET", target), 404, "not_found")
    assert_envelope(live_server.authed("DELETE", target), 404, "unknown_connection")
    assert live_server.listing() == live_server.seeded


@pytest.mark.parametrize(
    "header_lines",
    [
        [b"X-A: a\rb"],  # bare CR inside a value
        [b"X-A: a", b" folded"],  # obsolete line folding
        [b"X-A: a\x00b"],  # NUL inside a value
        [b"Bad Name: v"],  # space inside a field name
        [b"Content-Length: abc"],
        [b"Content-Length: -1"],
        [b"Content-Length: 5", b"Content-Length: 6"],
        [b"Content-Length: 5", b"Transfer-Encoding: chunked"],  # a smuggling attempt
    ],
    ids=["bare-cr", "obs-fold", "nul", "space-in-name", "cl-abc", "cl-neg", "cl-twice", "cl+te"],
)
def test_real_server_refuses_malformed_framing_with_a_4xx(
    live_server: LiveServer, header_lines: list[bytes]
) -> None:
    """Malformed header lines get a prompt 4xx (never a 5xx), and the server keeps serving."""
    head = b"POST /connections/metadata HTTP/1.1\r\nHost: t\r\n" + b"\r\n".join(header_lines)
    response = live_server.request(head + b"\r\n\r\n", b"hello")
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert "Traceback" not in response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        assert_envelope(response, response.status_code)  # answered by the app: the envelope
    health = live_server.request(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert health.status_code == 200
    assert not live_server.server_errors()
    assert live_server.listing() == live_server.seeded
