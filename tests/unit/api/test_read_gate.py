"""The read gate (freshtoken.api.read_gate): one table from refusal to status, code and message.

The refresh core refuses with a reason and knows nothing of HTTP; these tests pin, byte for byte,
what the read routes and the refresh route answer for each reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from freshtoken.api.read_gate import REFUSALS, manual_refusal, refused_manual
from freshtoken.refresh.grants import PERMANENT, TRANSIENT, GrantError
from freshtoken.refresh.seam import RefreshDenied, Refusal
from freshtoken.refresh.service import RefreshResult
from freshtoken.runtime import Runtime
from freshtoken.store.models import Connection

IntegrationFactory = Callable[..., str]
Importer = Callable[..., dict[str, Any]]

EXTERNAL = (
    "The external API returned an error when trying to refresh the access token. "
    "Please try again later."
)
LOCK_HELD = "Another refresh of this connection is in progress. Please try again shortly."
RATE = (
    "The provider's refresh rate limit is reached. Please try again in a moment "
    "(the current token, if still valid, is served on a read without force_refresh)."
)

# What a read answers for each refusal: (status, code, message), as shipped before the move.
READ_ANSWERS: dict[Refusal, tuple[int, str, str]] = {
    Refusal.EXHAUSTED: (
        424,
        "invalid_credentials",
        "The refresh limit has been reached for this connection.",
    ),
    Refusal.NEEDS_REAUTH: (
        424,
        "invalid_credentials",
        "The connection's authorization was rejected by the provider and must be renewed.",
    ),
    Refusal.COOLDOWN: (
        424,
        "invalid_credentials",
        "A recent refresh attempt failed. Backing off before retrying.",
    ),
    Refusal.LOCK_TIMEOUT: (424, "invalid_credentials", LOCK_HELD),
    Refusal.RATE_LIMITED: (429, "rate_limited", RATE),
    Refusal.LOCK_UNAVAILABLE: (
        503,
        "lock_unavailable",
        "The lock service is unavailable, so the token cannot be refreshed safely right now.",
    ),
    Refusal.PROVIDER_REJECTED: (400, "invalid_credentials", EXTERNAL),
    Refusal.FAILED: (400, "invalid_credentials", EXTERNAL),
}


class DenyingRefresher:
    """A read refresher that refuses every read with one reason."""

    def __init__(self, reason: Refusal) -> None:
        self.reason = reason

    def refresh_for_read(
        self, conn: Connection, credentials: dict[str, Any], *, force: bool
    ) -> tuple[Connection, dict[str, Any]]:
        """Refuse, pointing at a log line."""
        raise RefreshDenied(self.reason, log_id="log-gate")


@pytest.fixture
def stored(
    runtime: Runtime, make_integration: IntegrationFactory, import_connection: Importer
) -> Connection:
    """One imported OAUTH2 connection ``c1``, read back from the store."""
    make_integration()
    import_connection("c1")
    with runtime.store() as store:
        conn = store.get_connection("oauth2-test", "c1")
        assert conn is not None
        return conn


def test_every_refusal_has_exactly_one_answer() -> None:
    """The table covers every reason the refresh core can give, and only those."""
    assert set(REFUSALS) == set(Refusal)
    assert set(READ_ANSWERS) == set(Refusal)


@pytest.mark.parametrize("reason", list(Refusal))
@pytest.mark.usefixtures("stored")
def test_read_routes_answer_each_refusal_from_the_table(
    runtime: Runtime, client: TestClient, reason: Refusal
) -> None:
    """Both read spellings answer a refusal with the table's status, code and message, and the
    connection without credentials, its errors pointing at the refusal's log line."""
    runtime.refresher = DenyingRefresher(reason)
    status, code, message = READ_ANSWERS[reason]
    for path in ("/connections/c1", "/connection/c1"):
        response = client.get(path, params={"provider_config_key": "oauth2-test"})
        assert response.status_code == status
        body = response.json()
        assert list(body) == ["error"]
        assert (body["error"]["code"], body["error"]["message"]) == (code, message)
        assert list(body["error"]["payload"]) == ["connection"]
        shown = body["error"]["payload"]["connection"]
        assert shown["credentials"] == {}
        assert shown["errors"] == [{"type": "auth", "log_id": "log-gate"}]
        assert "at-secret-0001" not in response.text


def _result(
    outcome: str, error: GrantError | None, conn: Connection | None = None
) -> RefreshResult:
    return RefreshResult(outcome, conn, {}, "log-manual", error)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (_result("lock_timeout", None), Refusal.LOCK_TIMEOUT),
        (_result("failed", GrantError(TRANSIENT, "throttled")), Refusal.RATE_LIMITED),
        (
            _result("failed", GrantError(PERMANENT, "invalid_grant", http_status=400)),
            Refusal.PROVIDER_REJECTED,
        ),
        (_result("failed", GrantError(TRANSIENT, "timeout")), Refusal.FAILED),
        # The refresh route has always reported a lock outage as a failed refresh (400, with
        # error_code lock_unavailable in the payload), unlike the read routes' 503.
        (_result("failed", GrantError(TRANSIENT, "lock_unavailable")), Refusal.FAILED),
        (_result("fenced", None), Refusal.FAILED),
    ],
)
def test_manual_refusal_reasons(result: RefreshResult, reason: Refusal) -> None:
    """A forced refresh that served nothing maps to one refusal: a held lock, the rate limit,
    a rejection by the provider, or any other failure."""
    assert manual_refusal(result) is reason


def _body(response: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(bytes(response.body))
    return parsed


def test_refresh_route_answers_a_held_lock(stored: Connection) -> None:
    """424 invalid_credentials, the read's message, and only the connection in the payload."""
    response = refused_manual(_result("lock_timeout", None), stored)
    body = _body(response)
    assert response.status_code == 424
    assert (body["error"]["code"], body["error"]["message"]) == ("invalid_credentials", LOCK_HELD)
    assert list(body["error"]["payload"]) == ["connection"]
    assert body["error"]["payload"]["connection"]["errors"] == [
        {"type": "auth", "log_id": "log-manual"}
    ]


def test_refresh_route_answers_the_rate_limit(stored: Connection) -> None:
    """429 rate_limited with the route's shorter message, the connection and the log id."""
    response = refused_manual(_result("failed", GrantError(TRANSIENT, "throttled")), stored)
    body = _body(response)
    assert response.status_code == 429
    assert (body["error"]["code"], body["error"]["message"]) == (
        "rate_limited",
        "The provider's refresh rate limit is reached. Please try again in a moment.",
    )
    assert list(body["error"]["payload"]) == ["connection", "log_id"]
    assert body["error"]["payload"]["log_id"] == "log-manual"


@pytest.mark.parametrize(
    "error",
    [
        GrantError(PERMANENT, "invalid_grant", http_status=400),
        GrantError(TRANSIENT, "lock_unavailable"),
        None,
    ],
)
def test_refresh_route_answers_a_failed_refresh(
    stored: Connection, error: GrantError | None
) -> None:
    """400 invalid_credentials with the route's message and what failed: outcome, error code
    and class, log id (in that order)."""
    response = refused_manual(_result("failed", error), stored)
    body = _body(response)
    assert response.status_code == 400
    assert (body["error"]["code"], body["error"]["message"]) == (
        "invalid_credentials",
        "The external API returned an error when trying to refresh the access token.",
    )
    payload = body["error"]["payload"]
    assert list(payload) == ["connection", "outcome", "error_code", "error_class", "log_id"]
    assert (payload["outcome"], payload["log_id"]) == ("failed", "log-manual")
    assert payload["error_code"] == (error.error_code if error else None)
    assert payload["error_class"] == (error.error_class if error else None)
    assert payload["connection"]["credentials"] == {}
