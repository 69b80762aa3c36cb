"""Authentication: the bearer secret key on every route except /health."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from freshtoken.api.deps import key_digest

AUTHED_ROUTES = [
    ("GET", "/connections/c1?provider_config_key=k"),
    ("GET", "/connection/c1?provider_config_key=k"),
    ("GET", "/connections"),
    ("GET", "/connection"),
    ("POST", "/connections"),
    ("POST", "/connection"),
    ("PATCH", "/connections/c1?provider_config_key=k"),
    ("DELETE", "/connections/c1?provider_config_key=k"),
    ("DELETE", "/connection/c1?provider_config_key=k"),
    ("POST", "/connections/metadata"),
    ("PATCH", "/connections/metadata"),
    ("POST", "/connection/metadata"),
    ("PATCH", "/connection/metadata"),
    ("POST", "/connection/c1/metadata"),
    ("PATCH", "/connection/c1/metadata"),
    ("GET", "/integrations"),
    ("POST", "/integrations"),
    ("GET", "/integrations/k"),
    ("PATCH", "/integrations/k"),
    ("DELETE", "/integrations/k"),
    ("GET", "/providers"),
    ("GET", "/providers/oauth2"),
]


@pytest.mark.parametrize(("method", "url"), AUTHED_ROUTES)
def test_missing_header_is_401_missing_auth_header(
    anon_client: TestClient, method: str, url: str
) -> None:
    """Every route but /health answers 401 missing_auth_header without an Authorization header."""
    response = anon_client.request(method, url)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "missing_auth_header"
    assert error["message"] == (
        "Authentication failed. The request is missing the Authorization header."
    )
    assert response.headers["www-authenticate"] == "Bearer"


def test_auth_is_checked_before_the_body_is_parsed(anon_client: TestClient) -> None:
    """An unauthenticated request with a broken body gets 401, not a validation error."""
    response = anon_client.post(
        "/connections", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_auth_header"


def test_auth_is_checked_before_query_validation(anon_client: TestClient) -> None:
    """An unauthenticated request with unknown query params gets 401, not 400."""
    response = anon_client.get("/connections/c1?bogus=1")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "bearer a b", "justakey"],
)
def test_malformed_header_is_401_malformed_auth_header(
    anon_client: TestClient, header: str
) -> None:
    """An Authorization header that is not ``Bearer <key>`` is 401 malformed_auth_header."""
    response = anon_client.get("/connections", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "malformed_auth_header"


@pytest.mark.parametrize("key", ["wrong-key", "x" * 5000, "ft_sk_" + "A" * 43, "ключ-не-тот"])
def test_wrong_key_is_401_unknown_account_without_echo(anon_client: TestClient, key: str) -> None:
    """A wrong key of any length is 401 unknown_account and the body never contains it."""
    header = f"Bearer {key}".encode()  # bytes: non-ASCII keys travel as raw UTF-8
    response = anon_client.get("/connections", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unknown_account"
    assert key not in response.text


def test_bearer_scheme_is_case_insensitive(anon_client: TestClient, secret_key: str) -> None:
    """``bearer <key>`` (lower-case scheme) authenticates like ``Bearer <key>``."""
    response = anon_client.get("/connections", headers={"Authorization": f"bearer {secret_key}"})
    assert response.status_code == 200


def test_right_key_is_accepted(client: TestClient) -> None:
    """The configured secret key authenticates."""
    assert client.get("/connections").status_code == 200


def test_health_needs_no_auth(anon_client: TestClient) -> None:
    """GET /health answers 200 without any Authorization header."""
    response = anon_client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_key_digest_is_fixed_length() -> None:
    """Keys of any length hash to 32 bytes, so compare_digest never short-circuits on length."""
    assert len(key_digest("a")) == len(key_digest("b" * 10_000)) == 32
    assert key_digest("same") == key_digest("same")
