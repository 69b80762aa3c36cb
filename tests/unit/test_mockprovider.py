"""Tests of the real-HTTP mock OAuth2 provider (freshtoken.mockprovider)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

import freshtoken.mockprovider as mockprovider
from freshtoken.mockprovider import MockProvider, MockProviderConfig

CLIENT = ("mock-client", "mock-secret")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An httpx client with a short timeout so a misbehaving server fails fast."""
    with httpx.Client(timeout=5.0) as c:
        yield c


def refresh(
    http: httpx.Client,
    mock_provider: MockProvider,
    refresh_token: str,
    auth: tuple[str, str] | None = CLIENT,
    **extra: str,
) -> httpx.Response:
    """POST a form-encoded refresh_token grant with HTTP Basic client auth."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return http.post(
        mock_provider.token_url,
        data=data,
        auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
    )


def basic_header(client_id: str, secret: str, *, encode: bool = True) -> str:
    """Build an RFC 6749 §2.3.1 Basic header (form-urlencoding each part unless told not to)."""
    if encode:
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# ---------------------------------------------------------------- rotation and reuse


def test_refresh_rotates_and_spends_old_token(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """A refresh returns a new access and refresh token, and the presented token is spent."""
    seeded = mock_provider.seed()
    resp = refresh(http, mock_provider, seeded["refresh_token"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"]
    assert body["access_token"].startswith("mock-at-")
    assert body["refresh_token"].startswith("mock-rt-")
    assert body["refresh_token"] != seeded["refresh_token"]
    assert mock_provider.current_refresh_token(seeded["refresh_token"]) == body["refresh_token"]
    assert mock_provider.current_refresh_token(body["access_token"]) == body["refresh_token"]
    assert mock_provider.is_access_token_valid(body["access_token"])
    # The successor works and rotates again.
    again = refresh(http, mock_provider, body["refresh_token"])
    assert again.status_code == 200
    assert again.json()["refresh_token"] not in (body["refresh_token"], seeded["refresh_token"])


def test_reuse_of_spent_token_revokes_family(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """Replaying a spent refresh token gives invalid_grant and revokes the successor RT and AT."""
    seeded = mock_provider.seed()
    first = refresh(http, mock_provider, seeded["refresh_token"]).json()
    replay = refresh(http, mock_provider, seeded["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert not mock_provider.is_access_token_valid(first["access_token"])
    assert not mock_provider.is_access_token_valid(seeded["access_token"])
    assert mock_provider.current_refresh_token(first["refresh_token"]) is None
    successor = refresh(http, mock_provider, first["refresh_token"])
    assert successor.status_code == 400
    assert successor.json()["error"] == "invalid_grant"
    stats = mock_provider.stats()
    assert stats["reuse_detected"] == 1
    assert stats["families_revoked"] == 1
    assert stats["invalid_grant"] == 2


def test_spent_token_without_reuse_detection_is_rejected_but_family_survives(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """With reuse_detection off a spent token is still rejected, but the family stays valid."""
    mock_provider.configure(reuse_detection=False)
    seeded = mock_provider.seed()
    first = refresh(http, mock_provider, seeded["refresh_token"]).json()
    replay = refresh(http, mock_provider, seeded["refresh_token"])
    assert replay.json()["error"] == "invalid_grant"
    assert mock_provider.is_access_token_valid(first["access_token"])
    assert refresh(http, mock_provider, first["refresh_token"]).status_code == 200
    assert mock_provider.stats()["families_revoked"] == 0


def test_grace_window_accepts_just_spent_token(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """Within grace_seconds a spent token yields a fresh pair in the same family; after, reuse."""
    mock_provider.configure(grace_seconds=0.4)
    seeded = mock_provider.seed()
    first = refresh(http, mock_provider, seeded["refresh_token"]).json()
    retry = refresh(http, mock_provider, seeded["refresh_token"])
    assert retry.status_code == 200
    second = retry.json()
    assert second["refresh_token"] not in (first["refresh_token"], seeded["refresh_token"])
    assert mock_provider.current_refresh_token(seeded["refresh_token"]) == second["refresh_token"]
    assert mock_provider.is_access_token_valid(first["access_token"])
    assert mock_provider.stats()["grace_accepted"] == 1
    time.sleep(0.5)
    late = refresh(http, mock_provider, seeded["refresh_token"])
    assert late.json()["error"] == "invalid_grant"
    assert mock_provider.current_refresh_token(second["refresh_token"]) is None


def test_no_rotation_keeps_refresh_token(mock_provider: MockProvider, http: httpx.Client) -> None:
    """With rotation off every refresh returns the same refresh token and it stays usable."""
    mock_provider.configure(rotate_refresh_tokens=False)
    seeded = mock_provider.seed(refresh_token="my-long-lived-rt")
    for _ in range(3):
        resp = refresh(http, mock_provider, "my-long-lived-rt")
        assert resp.status_code == 200
        assert resp.json()["refresh_token"] == "my-long-lived-rt"
    assert mock_provider.current_refresh_token(seeded["access_token"]) == "my-long-lived-rt"
    assert mock_provider.stats()["calls_by_refresh_token"] == {"my-long-lived-rt": 3}


def test_unknown_refresh_token_is_invalid_grant(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """A refresh token the server never issued is rejected with 400 invalid_grant."""
    resp = refresh(http, mock_provider, "mock-rt-never-issued")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    assert mock_provider.stats()["invalid_grant"] == 1


def test_malformed_token_requests(mock_provider: MockProvider, http: httpx.Client) -> None:
    """Missing refresh_token, missing or unsupported grant_type give the RFC 6749 error codes."""
    no_rt = http.post(mock_provider.token_url, data={"grant_type": "refresh_token"}, auth=CLIENT)
    assert (no_rt.status_code, no_rt.json()["error"]) == (400, "invalid_request")
    no_grant = http.post(mock_provider.token_url, data={}, auth=CLIENT)
    assert (no_grant.status_code, no_grant.json()["error"]) == (400, "invalid_request")
    password = http.post(mock_provider.token_url, data={"grant_type": "password"}, auth=CLIENT)
    assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")


def test_json_body_is_accepted(mock_provider: MockProvider, http: httpx.Client) -> None:
    """The token endpoint also accepts an application/json body, including body client auth."""
    seeded = mock_provider.seed()
    resp = http.post(
        mock_provider.token_url,
        json={
            "grant_type": "refresh_token",
            "refresh_token": seeded["refresh_token"],
            "client_id": CLIENT[0],
            "client_secret": CLIENT[1],
            "scope": "files.read",
        },
    )
    assert resp.status_code == 200
    assert resp.json()["scope"] == "files.read"


def test_access_token_expires(mock_provider: MockProvider, http: httpx.Client) -> None:
    """An access token stops being valid (also at /userinfo) once its lifetime has passed."""
    seeded = mock_provider.seed(lifetime_seconds=0.2)
    headers = {"Authorization": f"Bearer {seeded['access_token']}"}
    assert http.get(mock_provider.url + "/userinfo", headers=headers).status_code == 200
    time.sleep(0.3)
    assert not mock_provider.is_access_token_valid(seeded["access_token"])
    assert http.get(mock_provider.url + "/userinfo", headers=headers).status_code == 401


# ---------------------------------------------------------------- client authentication


def test_any_mode_accepts_basic_and_body(mock_provider: MockProvider, http: httpx.Client) -> None:
    """In "any" mode both HTTP Basic and body credentials work, and stats say which was used."""
    seeded = mock_provider.seed()
    via_basic = refresh(http, mock_provider, seeded["refresh_token"]).json()
    via_body = refresh(
        http,
        mock_provider,
        via_basic["refresh_token"],
        auth=None,
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
    )
    assert via_body.status_code == 200
    assert mock_provider.stats()["client_auth_used"] == {"basic": 1, "body": 1}


def test_basic_mode_rejects_body_credentials(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """In "basic" mode body credentials get 401 invalid_client and the token is not spent."""
    mock_provider.configure(client_auth="basic")
    seeded = mock_provider.seed()
    resp = refresh(
        http,
        mock_provider,
        seeded["refresh_token"],
        auth=None,
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert "Basic" in resp.headers["WWW-Authenticate"]
    assert refresh(http, mock_provider, seeded["refresh_token"]).status_code == 200


def test_body_mode_rejects_basic_credentials(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """In "body" mode an HTTP Basic header alone gets 401 invalid_client; body creds work."""
    mock_provider.configure(client_auth="body")
    seeded = mock_provider.seed()
    resp = refresh(http, mock_provider, seeded["refresh_token"])
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    ok = refresh(
        http,
        mock_provider,
        seeded["refresh_token"],
        auth=None,
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
    )
    assert ok.status_code == 200


def test_wrong_or_missing_client_credentials(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """A wrong secret, a wrong client id, garbage Basic or no credentials all get 401."""
    seeded = mock_provider.seed()
    rt = seeded["refresh_token"]
    assert refresh(http, mock_provider, rt, auth=(CLIENT[0], "wrong")).status_code == 401
    assert refresh(http, mock_provider, rt, auth=("other-client", CLIENT[1])).status_code == 401
    assert refresh(http, mock_provider, rt, auth=None).status_code == 401
    garbage = http.post(
        mock_provider.token_url,
        data={"grant_type": "refresh_token", "refresh_token": rt},
        headers={"Authorization": "Basic !!!not-base64"},
    )
    assert garbage.status_code == 401
    assert mock_provider.stats()["invalid_client"] == 4
    assert mock_provider.current_refresh_token(rt) == rt  # never spent by failed auth


def test_basic_auth_special_char_secret_is_form_urlencoded(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """A secret like "s3cr:t/+=" works only when Basic parts are form-urlencoded (RFC 6749)."""
    mock_provider.configure(client_id="my app", client_secret="s3cr:t/+=")
    seeded = mock_provider.seed()
    form = {"grant_type": "refresh_token", "refresh_token": seeded["refresh_token"]}
    raw = http.post(
        mock_provider.token_url,
        data=form,
        headers={"Authorization": basic_header("my app", "s3cr:t/+=", encode=False)},
    )
    assert raw.status_code == 401  # "+" decodes to a space, like oauthlib-based servers
    encoded = http.post(
        mock_provider.token_url,
        data=form,
        headers={"Authorization": basic_header("my app", "s3cr:t/+=")},
    )
    assert encoded.status_code == 200


def test_client_credentials_grant(mock_provider: MockProvider, http: httpx.Client) -> None:
    """client_credentials issues a valid access token and no refresh token."""
    resp = http.post(
        mock_provider.token_url,
        data={"grant_type": "client_credentials", "scope": "a b"},
        auth=CLIENT,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert "refresh_token" not in body
    assert body["scope"] == "a b"
    assert body["expires_in"] == 3600
    assert mock_provider.is_access_token_valid(body["access_token"])
    assert mock_provider.current_refresh_token(body["access_token"]) is None
    me = http.get(
        mock_provider.url + "/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json() == {"sub": "mock-client"}
    assert mock_provider.stats()["client_credentials_calls"] == 1


# ---------------------------------------------------------------- response shapes


def test_omit_expires_in(mock_provider: MockProvider, http: httpx.Client) -> None:
    """omit_expires_in drops expires_in from the response, like Salesforce."""
    mock_provider.configure(omit_expires_in=True)
    body = refresh(http, mock_provider, mock_provider.seed()["refresh_token"]).json()
    assert "expires_in" not in body
    assert body["access_token"]


def test_expires_in_as_string(mock_provider: MockProvider, http: httpx.Client) -> None:
    """expires_in_as_string sends expires_in as a JSON string, like PayPal."""
    mock_provider.configure(expires_in_as_string=True, token_lifetime_seconds=900)
    body = refresh(http, mock_provider, mock_provider.seed()["refresh_token"]).json()
    assert body["expires_in"] == "900"


def test_omit_refresh_token_in_response(mock_provider: MockProvider, http: httpx.Client) -> None:
    """Dropbox style: the response has no refresh_token or scope and the old RT stays valid."""
    mock_provider.configure(omit_refresh_token_in_response=True)
    rt = mock_provider.seed()["refresh_token"]
    for _ in range(2):
        resp = refresh(http, mock_provider, rt)
        assert resp.status_code == 200
        assert set(resp.json()) == {"access_token", "token_type", "expires_in"}
    assert mock_provider.current_refresh_token(rt) == rt


# ---------------------------------------------------------------- fault injection


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("500", 500, {"error": "server_error"}),
        ("503", 503, {"error": "temporarily_unavailable"}),
        ("429", 429, {"error": "rate_limited"}),
        ("invalid_grant", 400, {"error": "invalid_grant"}),
        ("invalid_client", 401, {"error": "invalid_client"}),
        ("slack_ok_false", 200, {"ok": False, "error": "invalid_refresh_token"}),
        ("hubspot_bad_refresh", 400, {"status": "BAD_REFRESH_TOKEN"}),
    ],
)
def test_injected_json_errors(
    mock_provider: MockProvider,
    http: httpx.Client,
    kind: str,
    status: int,
    expected: dict[str, Any],
) -> None:
    """Each injected JSON error kind answers with its status and body and spends no token."""
    rt = mock_provider.seed()["refresh_token"]
    mock_provider.inject(kind)
    resp = refresh(http, mock_provider, rt)
    assert resp.status_code == status
    assert resp.headers["Content-Length"] == str(len(resp.content))
    body = resp.json()
    assert {k: body.get(k) for k in expected} == expected
    if kind == "429":
        assert resp.headers["Retry-After"] == "2"
    assert refresh(http, mock_provider, rt).status_code == 200  # the injection was consumed
    stats = mock_provider.stats()
    assert stats["injected_errors"] == 1
    assert stats["successes"] == 1


def test_injection_queue_order_retry_after_and_count(
    mock_provider: MockProvider, http: httpx.Client
) -> None:
    """Injections apply in order, count repeats a kind, and retry_after sets Retry-After."""
    rt = mock_provider.seed()["refresh_token"]
    mock_provider.inject("429", retry_after=7)
    mock_provider.inject("503", count=2, retry_after=3)
    first = refresh(http, mock_provider, rt)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    for _ in range(2):
        resp = refresh(http, mock_provider, rt)
        assert (resp.status_code, resp.headers["Retry-After"]) == (503, "3")
    assert refresh(http, mock_provider, rt).status_code == 200


def test_injected_non_json(mock_provider: MockProvider, http: httpx.Client) -> None:
    """non_json answers 200 with an HTML body that is not JSON."""
    mock_provider.inject("non_json")
    resp = refresh(http, mock_provider, mock_provider.seed()["refresh_token"])
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        resp.json()


def test_injected_custom_body(mock_provider: MockProvider, http: httpx.Client) -> None:
    """custom answers 400 with exactly the given JSON body."""
    mock_provider.inject(
        "custom", body={"error": "invalid_request", "error_description": "expired"}
    )
    resp = refresh(http, mock_provider, mock_provider.seed()["refresh_token"])
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_request", "error_description": "expired"}


def test_inject_rejects_unknown_kind(mock_provider: MockProvider) -> None:
    """inject() refuses unknown kinds and non-positive counts."""
    with pytest.raises(ValueError):
        mock_provider.inject("teapot")
    with pytest.raises(ValueError):
        mock_provider.inject("500", count=0)


def test_injected_timeout_hangs_and_stop_does_not() -> None:
    """timeout makes the client time out, and stop() returns promptly despite the hang."""
    mock_provider = MockProvider().start()
    try:
        rt = mock_provider.seed()["refresh_token"]
        mock_provider.inject("timeout")
        with httpx.Client(timeout=0.3) as short, pytest.raises(httpx.TimeoutException):
            refresh(short, mock_provider, rt)
        assert mock_provider.stats()["in_flight"] == 1  # still hanging server-side
    finally:
        started = time.monotonic()
        mock_provider.stop()
        assert time.monotonic() - started < 2.0
    assert _eventually(lambda: mock_provider.stats()["in_flight"] == 0)


def _eventually(predicate: Any, timeout: float = 2.0) -> bool:
    """Poll predicate() until it is true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# ---------------------------------------------------------------- latency, stats, concurrency


def test_latency_is_applied(mock_provider: MockProvider, http: httpx.Client) -> None:
    """latency_seconds delays every token response by at least that long."""
    mock_provider.configure(latency_seconds=0.3)
    rt = mock_provider.seed()["refresh_token"]
    started = time.monotonic()
    resp = refresh(http, mock_provider, rt)
    assert resp.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_lost_response_still_rotates(mock_provider: MockProvider) -> None:
    """A client that times out during latency loses a refresh that happened; its retry is reuse."""
    mock_provider.configure(latency_seconds=0.4)
    seeded = mock_provider.seed()
    with httpx.Client(timeout=0.1) as short, pytest.raises(httpx.TimeoutException):
        refresh(short, mock_provider, seeded["refresh_token"])
    mock_provider.configure(latency_seconds=0.0)
    with httpx.Client(timeout=5.0) as c:
        retry = refresh(c, mock_provider, seeded["refresh_token"])
    assert retry.json()["error"] == "invalid_grant"
    assert mock_provider.stats()["reuse_detected"] == 1


def test_stats_counters_and_reset(mock_provider: MockProvider, http: httpx.Client) -> None:
    """stats() counts calls by grant, outcome and refresh token; reset_stats() zeroes them."""
    rt = mock_provider.seed()["refresh_token"]
    new_rt = refresh(http, mock_provider, rt).json()["refresh_token"]
    refresh(http, mock_provider, "mock-rt-unknown")
    http.post(mock_provider.token_url, data={"grant_type": "client_credentials"}, auth=CLIENT)
    mock_provider.inject("500")
    refresh(http, mock_provider, new_rt)
    stats = mock_provider.stats()
    assert stats["token_calls"] == 4
    assert stats["refresh_calls"] == 3
    assert stats["client_credentials_calls"] == 1
    assert stats["successes"] == 2
    assert stats["invalid_grant"] == 1
    assert stats["injected_errors"] == 1
    assert stats["max_concurrent"] == 1
    assert stats["calls_by_refresh_token"] == {rt: 1, "mock-rt-unknown": 1, new_rt: 1}
    mock_provider.reset_stats()
    stats = mock_provider.stats()
    assert stats["token_calls"] == 0
    assert stats["calls_by_refresh_token"] == {}
    assert refresh(http, mock_provider, new_rt).status_code == 200  # tokens survive a reset


def test_200_concurrent_refreshes_of_one_token(mock_provider: MockProvider) -> None:
    """200 simultaneous refreshes of one rotating token: one success, 199 invalid_grant."""
    mock_provider.configure(latency_seconds=0.3)
    rt = mock_provider.seed()["refresh_token"]
    n = 200
    barrier = threading.Barrier(n)
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    with httpx.Client(timeout=15.0, limits=limits) as shared:

        def attempt(_: int) -> tuple[int, dict[str, Any]]:
            barrier.wait()
            resp = refresh(shared, mock_provider, rt)
            return resp.status_code, resp.json()

        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(attempt, range(n)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 400: n - 1}
    assert all(body["error"] == "invalid_grant" for status, body in results if status == 400)
    winner = next(body for status, body in results if status == 200)
    # The replays revoked the winner's family: a refresher without single-flight loses it all.
    assert not mock_provider.is_access_token_valid(winner["access_token"])
    assert mock_provider.current_refresh_token(rt) is None
    stats = mock_provider.stats()
    assert stats["refresh_calls"] == n
    assert stats["calls_by_refresh_token"] == {rt: n}
    assert stats["reuse_detected"] == n - 1
    assert stats["families_revoked"] == 1
    assert stats["max_concurrent"] >= 50


# ---------------------------------------------------------------- other endpoints


def test_admin_endpoints(mock_provider: MockProvider, http: httpx.Client) -> None:
    """The /_mock endpoints seed, configure, inject, report and reset over HTTP."""
    seeded = http.post(mock_provider.url + "/_mock/seed", json={"refresh_token": "rt-over-http"})
    assert seeded.status_code == 200
    assert seeded.json()["refresh_token"] == "rt-over-http"
    assert seeded.json()["access_token"].startswith("mock-at-")

    cfg = http.post(mock_provider.url + "/_mock/config", json={"rotate_refresh_tokens": False})
    assert cfg.status_code == 200
    assert cfg.json()["rotate_refresh_tokens"] is False
    assert cfg.json()["client_secret"] == "***"
    assert mock_provider.config.rotate_refresh_tokens is False
    bad = http.post(mock_provider.url + "/_mock/config", json={"no_such_field": 1})
    assert bad.status_code == 400
    bad_type = http.post(mock_provider.url + "/_mock/config", json={"client_auth": "mtls"})
    assert bad_type.status_code == 400

    inj = http.post(mock_provider.url + "/_mock/inject", json={"kind": "429", "retry_after": 5})
    assert inj.status_code == 200
    limited = refresh(http, mock_provider, "rt-over-http")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "5")
    assert http.post(mock_provider.url + "/_mock/inject", json={"kind": "nope"}).status_code == 400

    assert refresh(http, mock_provider, "rt-over-http").json()["refresh_token"] == "rt-over-http"
    stats = http.get(mock_provider.url + "/_mock/stats").json()
    assert stats["token_calls"] == 2
    assert stats["injected_errors"] == 1
    assert http.post(mock_provider.url + "/_mock/reset").status_code == 200
    assert http.get(mock_provider.url + "/_mock/stats").json()["token_calls"] == 0


def test_health_userinfo_and_unknown_paths(mock_provider: MockProvider, http: httpx.Client) -> None:
    """/health is 200, /userinfo checks the bearer, unknown paths are 404, wrong methods 405."""
    assert http.get(mock_provider.url + "/health").json() == {"status": "ok"}
    seeded = mock_provider.seed()
    ok = http.get(
        mock_provider.url + "/userinfo",
        headers={"Authorization": f"Bearer {seeded['access_token']}"},
    )
    assert ok.status_code == 200
    assert ok.json()["sub"].startswith("mock-user-")
    assert http.get(mock_provider.url + "/userinfo").status_code == 401
    missing = http.get(mock_provider.url + "/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert missing.headers["Content-Length"] == str(len(missing.content))
    wrong = http.get(mock_provider.token_url)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"


def test_constructor_config_is_used_and_validated(http: httpx.Client) -> None:
    """The config given to the constructor drives responses, and an invalid one is refused."""
    with pytest.raises(ValueError):
        MockProvider(MockProviderConfig(client_auth="private_key_jwt"))
    config = MockProviderConfig(token_lifetime_seconds=120, client_id="cid", client_secret="cs")
    with MockProvider(config) as p:
        assert p.config is config
        assert p.token_url == p.url + "/oauth/token"
        body = refresh(http, p, p.seed()["refresh_token"], auth=("cid", "cs")).json()
        assert body["expires_in"] == 120


def test_configure_validates(mock_provider: MockProvider) -> None:
    """configure() rejects unknown fields and bad values without changing anything."""
    with pytest.raises(ValueError):
        mock_provider.configure(nonsense=True)
    with pytest.raises(ValueError):
        mock_provider.configure(client_auth="mtls", latency_seconds=1)
    with pytest.raises(ValueError):
        mock_provider.configure(rotate_refresh_tokens="yes")
    assert mock_provider.config.latency_seconds == 0.0
    assert mock_provider.config.client_auth == "any"


def test_keep_alive_reuses_one_connection(mock_provider: MockProvider) -> None:
    """Sequential requests from one client reuse a single HTTP/1.1 keep-alive connection."""
    rt = mock_provider.seed()["refresh_token"]
    peers = set()
    with httpx.Client(timeout=5.0) as c:
        for _ in range(5):
            resp = refresh(c, mock_provider, rt)
            rt = resp.json()["refresh_token"]
            stream = resp.extensions["network_stream"]
            peers.add(stream.get_extra_info("client_addr"))
    assert len(peers) == 1


def test_serve_prints_address_and_stops_on_sigterm() -> None:
    """serve() prints one listening line, answers requests, and exits cleanly on SIGTERM."""
    src = str(Path(mockprovider.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = (
        "from freshtoken.mockprovider import MockProviderConfig, serve; "
        "serve(MockProviderConfig(), '127.0.0.1', 0)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("mock provider listening on http://127.0.0.1:")
        assert line.rstrip().endswith("(token endpoint /oauth/token)")
        url = line.split()[4]
        assert httpx.get(url + "/health", timeout=5.0).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        out, err = proc.communicate(timeout=5)
        assert out == b""
        assert err == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
