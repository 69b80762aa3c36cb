"""The error envelope, body guards, unexpected errors, database outages, logs and OpenAPI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from freshtoken.api.app import MAX_BODY_BYTES, create_app
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.settings import Settings
from freshtoken.store.models import Connection

IntegrationFactory = Callable[..., str]
Importer = Callable[..., dict[str, Any]]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _assert_envelope(body: dict[str, Any], code: str) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    assert isinstance(error.get("message"), str)
    assert set(error) <= {"code", "message", "payload", "errors"}
    return error


# -- routing errors -------------------------------------------------------------------------------


def test_unknown_route_is_enveloped_404(client: TestClient) -> None:
    """A path no route matches answers 404 not_found in the envelope."""
    response = client.get("/definitely/not/a/route")
    assert response.status_code == 404
    _assert_envelope(response.json(), "not_found")


def test_wrong_method_is_enveloped_405(client: TestClient) -> None:
    """A known path with the wrong method answers 405 method_not_allowed with an Allow header."""
    response = client.put("/integrations")
    assert response.status_code == 405
    _assert_envelope(response.json(), "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("/connections/metadata", "PATCH, POST"),
        ("/connection/c1/metadata", "PATCH, POST"),
        ("/connections/c1", "DELETE, GET, PATCH"),
        ("/connection/c1", "DELETE, GET"),
        ("/connections", "GET, POST"),
    ],
)
def test_405_allow_lists_every_method_of_the_path(client: TestClient, url: str, allow: str) -> None:
    """Allow names every method served on the path, even when several routes serve it."""
    response = client.request("PUT", url)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


def test_repeated_scalar_query_parameter_is_400(client: TestClient) -> None:
    """A scalar query parameter given twice answers 400 invalid_query_params."""
    response = client.get("/connections", params=[("search", "a"), ("search", "b")])
    assert response.status_code == 400
    error = _assert_envelope(response.json(), "invalid_query_params")
    assert error["errors"][0]["path"] == ["search"]


# -- body guards ----------------------------------------------------------------------------------


def test_invalid_json_is_400_invalid_body(client: TestClient) -> None:
    """A body that is not JSON answers 400 invalid_body with a json_invalid item."""
    response = client.post(
        "/connections", content=b"{broken", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = _assert_envelope(response.json(), "invalid_body")
    assert error["errors"][0]["code"] == "json_invalid"


@pytest.mark.parametrize("depth", [65, 1000, 5000])
def test_deeply_nested_json_is_400_not_500(client: TestClient, depth: int) -> None:
    """JSON nested deeper than 64 levels (even past orjson's own limit) answers 400."""
    response = client.post(
        "/connections", content=_nested(depth), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    _assert_envelope(response.json(), "invalid_body")


def test_moderately_nested_metadata_is_accepted(
    client: TestClient, make_integration: IntegrationFactory, import_connection: Importer
) -> None:
    """Metadata nested 40 levels deep is well inside the limit and stored."""
    make_integration()
    import_connection("c1")
    metadata: dict[str, Any] = {}
    node = metadata
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    response = client.post(
        "/connections/metadata",
        json={"connection_id": "c1", "provider_config_key": "oauth2-test", "metadata": metadata},
    )
    assert response.status_code == 201


def test_invalid_utf8_is_400_invalid_body(client: TestClient) -> None:
    """A body with invalid UTF-8 answers 400 invalid_body."""
    response = client.post(
        "/connections", content=b'{"a": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    _assert_envelope(response.json(), "invalid_body")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_400_invalid_body(
    client: TestClient, content_type: str | None
) -> None:
    """A JSON body sent with another (or no) content type answers 400 invalid_body."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/connections", content=b'{"a": 1}', headers=headers)
    assert response.status_code == 400
    error = _assert_envelope(response.json(), "invalid_body")
    assert "application/json" in error["errors"][0]["message"]


def test_empty_body_is_400_invalid_body(client: TestClient) -> None:
    """A POST without a body answers 400 invalid_body."""
    response = client.post("/connections", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    _assert_envelope(response.json(), "invalid_body")


def test_declared_oversized_body_is_413(client: TestClient) -> None:
    """A Content-Length over 1 MiB answers 413 payload_too_large before the body is read."""
    response = client.post(
        "/connections",
        content=b"x" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    _assert_envelope(response.json(), "payload_too_large")


def test_streamed_oversized_body_is_413(client: TestClient) -> None:
    """A chunked body (no Content-Length) that grows past 1 MiB answers 413."""

    def chunks() -> Iterator[bytes]:
        for _ in range(12):
            yield b"x" * 100_000

    response = client.post(
        "/connections", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    _assert_envelope(response.json(), "payload_too_large")


def test_body_just_under_the_limit_is_not_413(
    client: TestClient, make_integration: IntegrationFactory, import_connection: Importer
) -> None:
    """A body just under 1 MiB is read and processed normally."""
    make_integration()
    import_connection("c1")
    filler = "a" * (MAX_BODY_BYTES - 200)
    response = client.post(
        "/connections/metadata",
        json={
            "connection_id": "c1",
            "provider_config_key": "oauth2-test",
            "metadata": {"f": filler},
        },
    )
    assert response.status_code == 201


def test_validation_messages_do_not_echo_input(client: TestClient) -> None:
    """Validation errors name fields and rules, never the submitted values."""
    secret = "sekrit-value-123"
    response = client.post(
        "/connections",
        json={
            "provider_config_key": f"bad key/{secret}",
            "credentials": {"type": secret, "access_token": secret},
            secret: secret,
        },
    )
    assert response.status_code == 400
    body = response.json()
    _assert_envelope(body, "invalid_body")
    for item in body["error"]["errors"]:
        assert secret not in item["message"]


# -- unexpected errors and the database --------------------------------------------------------


class _ExplodingRefresher:
    def refresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        raise RuntimeError(f"boom {credentials.get('access_token')}")


def test_unexpected_exception_is_generic_500_and_logged(
    runtime: Runtime,
    anon_client: TestClient,
    secret_key: str,
    make_integration: IntegrationFactory,
    import_connection: Importer,
) -> None:
    """An unexpected exception answers 500 server_error without details and logs api.error."""
    make_integration()
    import_connection("c1")
    runtime.refresher = _ExplodingRefresher()
    with capture_logs() as logs:
        response = anon_client.get(
            "/connections/c1?provider_config_key=oauth2-test",
            headers={"Authorization": f"Bearer {secret_key}"},
        )
    assert response.status_code == 500
    _assert_envelope(response.json(), "server_error")
    assert "boom" not in response.text
    assert "Traceback" not in response.text
    assert "at-secret" not in response.text
    errors = [e for e in logs if e["event"] == "api.error"]
    assert len(errors) == 1
    assert errors[0]["error"] == "RuntimeError"
    assert errors[0]["route"] == "/connections/{connectionId}"
    assert errors[0].get("exc_info") is True
    request_events = [e for e in logs if e["event"] == "api.request"]
    assert request_events[-1]["status"] == 500


@pytest.fixture
def broken_db_client(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    """A client whose database URL points at a directory, so every connection attempt fails."""
    broken = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path.as_posix()}"})
    rt = build_runtime(broken, with_refresher=False)
    try:
        with TestClient(
            create_app(rt),
            headers={"Authorization": f"Bearer {settings.secret_key_value()}"},
            raise_server_exceptions=False,
        ) as test_client:
            yield test_client
    finally:
        rt.close()


def test_health_is_503_when_database_is_unreachable(broken_db_client: TestClient) -> None:
    """GET /health answers 503 database_unavailable when the database cannot be reached."""
    response = broken_db_client.get("/health")
    assert response.status_code == 503
    _assert_envelope(response.json(), "database_unavailable")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/connections/c1?provider_config_key=k"),
        ("GET", "/connections"),
        ("GET", "/integrations"),
    ],
)
def test_database_errors_are_503_not_500(
    broken_db_client: TestClient, method: str, url: str
) -> None:
    """A database error on any route answers 503 database_unavailable."""
    response = broken_db_client.request(method, url)
    assert response.status_code == 503
    _assert_envelope(response.json(), "database_unavailable")


# -- access log --------------------------------------------------------------------------------


def test_access_event_has_route_template_and_no_query(
    client: TestClient, make_integration: IntegrationFactory, import_connection: Importer
) -> None:
    """Each request logs one api.request event with the route template, never the raw path."""
    make_integration()
    import_connection("very-private-id")
    with capture_logs() as logs:
        response = client.get("/connections/very-private-id?provider_config_key=oauth2-test")
    assert response.status_code == 200
    events = [e for e in logs if e["event"] == "api.request"]
    assert len(events) == 1
    event = events[0]
    assert event["method"] == "GET"
    assert event["route"] == "/connections/{connectionId}"
    assert event["status"] == 200
    assert isinstance(event["duration_ms"], float)
    assert event["request_id"] == response.headers["x-request-id"]
    assert "very-private-id" not in repr(event)
    assert "provider_config_key" not in repr(event)


def test_request_id_is_bound_during_the_handler(
    runtime: Runtime,
    client: TestClient,
    make_integration: IntegrationFactory,
    import_connection: Importer,
) -> None:
    """Logs emitted inside a (threadpool) handler carry the request's request_id."""
    make_integration()
    import_connection("c1")
    seen: list[dict[str, Any]] = []

    class Recorder:
        def refresh_for_read(
            self, conn: Connection, credentials: dict[str, Any], *, force: bool
        ) -> tuple[Connection, dict[str, Any]]:
            seen.append(structlog.contextvars.get_contextvars())
            return conn, credentials

    runtime.refresher = Recorder()
    response = client.get("/connections/c1?provider_config_key=oauth2-test")
    assert response.status_code == 200
    assert seen[0]["request_id"] == response.headers["x-request-id"]


def test_unmatched_route_logs_no_route(client: TestClient) -> None:
    """A request that matches no route logs route=None rather than the raw path."""
    with capture_logs() as logs:
        client.get("/secret-looking/path")
    event = next(e for e in logs if e["event"] == "api.request")
    assert event["route"] is None
    assert event["status"] == 404


# -- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_documents_errors_with_the_envelope(client: TestClient) -> None:
    """Every documented error response uses ErrorEnvelope and FastAPI's 422 is gone."""
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorEnvelope", (method, path, status)
            if path == "/health":
                assert "security" not in operation
            else:
                assert operation["security"] == [{"bearerAuth": []}], (method, path)
                assert "401" in responses, (method, path)


def test_openapi_parameters_are_not_nullable(client: TestClient) -> None:
    """Query, path and header parameters are documented without a ``null`` alternative."""
    spec = client.get("/openapi.json").json()
    for item in spec["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", ()):
                assert "anyOf" not in parameter["schema"], parameter


def test_openapi_legacy_metadata_documents_the_query_key(client: TestClient) -> None:
    """The legacy metadata routes document provider_config_key as a required query param."""
    spec = client.get("/openapi.json").json()
    for method in ("post", "patch"):
        operation = spec["paths"]["/connection/{connectionId}/metadata"][method]
        params = {p["name"]: p for p in operation["parameters"]}
        assert params["provider_config_key"]["required"] is True
        assert "Provider-Config-Key" not in params
        assert "x-required-query" not in operation


def test_openapi_lists_catalog_providers(runtime: Runtime, client: TestClient) -> None:
    """POST /integrations documents ``provider`` as one of the catalog's names."""
    spec = client.get("/openapi.json").json()
    provider = spec["components"]["schemas"]["PostIntegrationBody"]["properties"]["provider"]
    assert provider["enum"] == runtime.catalog.names()


def test_openapi_describes_the_success_shapes(client: TestClient) -> None:
    """GET /connections/{connectionId} documents ConnectionFullOut, 400 and 424."""
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/connections/{connectionId}"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/ConnectionFullOut"
    assert {"400", "401", "404", "424"} <= set(operation["responses"])
    names = {p["name"] for p in operation["parameters"]}
    assert {"connectionId", "provider_config_key", "refresh_token", "force_refresh"} <= names
