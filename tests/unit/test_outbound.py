"""The outbound policy against a hostile provider (issue 10, rows 1, 2, 3, 5, 9 and redirects).

Each test drives the real refresh service (or the grant code) against :class:`HostileProvider`,
a real HTTP server on 127.0.0.1, and checks what left freshtoken and what came back into its
logs, API answers and database.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs
from tests.hostile import HostileProvider
from tests.support import SECRET_KEY, make_runtime, make_settings

from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.outbound import OutboundDenied, OutboundPolicy, read_capped, sanitize_provider_text
from freshtoken.providers.catalog import UrlTemplateError, load_catalog, render_url
from freshtoken.refresh.grants import GrantError, GrantRequest, refresh_oauth2
from freshtoken.runtime import Runtime
from freshtoken.store.credentials import iso

REFRESH_TOKEN = "rt-hostile-Secret-7731xq"
CLIENT_SECRET = "cs-hostile-Secret-9917zk"
STRONG_KEY = "ft_sk_" + "Q7hR2mXk9pL4vN8tB3wZ6yC1dF5gJ0sA"

catalog = load_catalog()


def _runtime(tmp_path: Path, **overrides: Any) -> Runtime:
    settings = make_settings(tmp_path, **overrides)
    return make_runtime(settings, clock=FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0)))


def _seed(
    rt: Runtime,
    connection_config: dict[str, Any],
    *,
    provider: str = "oauth2",
    connection_id: str = "c1",
) -> int:
    now = rt.clock.now()
    with rt.store() as store:
        integration = store.get_integration("hp") or store.create_integration(
            unique_key="hp", provider=provider, client_id="hp-client", client_secret=CLIENT_SECRET
        )
        conn, _ = store.upsert_connection(
            integration,
            connection_id=connection_id,
            credentials={
                "type": "OAUTH2",
                "access_token": "at-hostile-old",
                "refresh_token": REFRESH_TOKEN,
                "expires_at": iso(now - dt.timedelta(seconds=5)),
                "raw": {},
            },
            connection_config=connection_config,
        )
        return conn.id


def _refresh(rt: Runtime, pk: int) -> Any:
    return rt.require_refresh_service().refresh(pk, trigger="manual", force=True)


def _stored_error(rt: Runtime, pk: int) -> str | None:
    with rt.store() as store:
        conn = store.get_connection_by_pk(pk)
        assert conn is not None
        return conn.last_refresh_error


# -- row 1: a host placeholder cannot move the request to another host --------------------------


def test_host_placeholder_must_be_one_label_or_a_listed_value() -> None:
    """exact-online/zoho: extension "attacker.example" is refused; listed values such as co.uk
    render; a plain subdomain placeholder takes one DNS label only."""
    exact = catalog.get("exact-online")
    zoho = catalog.get("zoho-crm")
    okta = catalog.get("okta")
    assert exact is not None and zoho is not None and okta is not None
    assert exact.token_url is not None and zoho.token_url is not None
    assert okta.token_url is not None
    from freshtoken.outbound import url_host_values

    for spec in (exact, zoho):
        assert spec.token_url is not None
        with pytest.raises(UrlTemplateError):
            render_url(
                spec.token_url,
                {"extension": "attacker.example"},
                host_values=url_host_values(spec),
            )
    rendered = render_url(
        exact.token_url, {"extension": "co.uk"}, host_values=url_host_values(exact)
    )
    assert rendered == "https://start.exactonline.co.uk/api/oauth2/token"
    with pytest.raises(UrlTemplateError):
        render_url(okta.token_url, {"subdomain": "evil.example/x?"})
    with pytest.raises(UrlTemplateError):
        render_url(okta.token_url, {"subdomain": "attacker.example#"})
    assert (
        render_url(okta.token_url, {"subdomain": "acme"}) == "https://acme.okta.com/oauth2/v1/token"
    )


def test_exact_online_refresh_to_another_host_sends_nothing() -> None:
    """A refresh of an exact-online connection with extension "attacker.example" fails
    permanently without any request leaving (the transport records every request)."""
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"access_token": "x", "expires_in": 60})

    exact = catalog.get("exact-online")
    assert exact is not None
    req = GrantRequest(
        spec=exact,
        connection_config={"extension": "attacker.example"},
        client_id="cid",
        client_secret=CLIENT_SECRET,
    )
    with (
        httpx.Client(transport=httpx.MockTransport(record)) as http,
        pytest.raises(GrantError) as e,
    ):
        refresh_oauth2(
            http,
            req,
            {"refresh_token": REFRESH_TOKEN},
            sent_at=dt.datetime.now(dt.UTC),
            default_lifetime=60,
        )
    assert sent == []
    assert (e.value.error_class, e.value.error_code) == ("permanent", "invalid_connection_config")


# -- row 2: no secrets to internal addresses in production --------------------------------------


def test_production_refuses_internal_token_url_and_records_the_failure(
    tmp_path: Path, hostile: HostileProvider
) -> None:
    """Production, token_url on 127.0.0.1: no request reaches it, the API's error_code is
    ``outbound_denied`` (nothing of the internal body) and the failure is recorded."""
    hostile.behave(kind="error", status=400, error="internal-admin-page-content")
    rt = _runtime(tmp_path, env="production", secret_key=STRONG_KEY)
    try:
        _seed(rt, {"token_url": hostile.url})
        headers = {"Authorization": f"Bearer {STRONG_KEY}"}
        with TestClient(create_app(rt), headers=headers) as client:
            response = client.post("/connections/c1/refresh", params={"provider_config_key": "hp"})
        assert response.status_code == 400
        payload = response.json()["error"]["payload"]
        assert payload["error_code"] == "outbound_denied"
        assert "internal" not in response.text
        assert hostile.received == []
        with rt.store() as store:
            conn = store.get_connection("hp", "c1")
            assert conn is not None
            assert conn.last_refresh_error == "outbound_denied"
            assert conn.needs_reauth
    finally:
        rt.close()


@pytest.mark.parametrize(
    "overrides",
    [{"outbound_allow_private": True}, {"outbound_allow_hosts": "example.org, 127.0.0.1"}],
)
def test_production_allows_private_addresses_when_configured(
    tmp_path: Path, hostile: HostileProvider, overrides: dict[str, Any]
) -> None:
    """FRESHTOKEN_OUTBOUND_ALLOW_PRIVATE or an allow-list naming the host lets the request go."""
    rt = _runtime(tmp_path, env="production", secret_key=STRONG_KEY, **overrides)
    try:
        pk = _seed(rt, {"token_url": hostile.url})
        result = _refresh(rt, pk)
        assert result.outcome == "success"
        assert [r.form["refresh_token"] for r in hostile.received] == [REFRESH_TOKEN]
    finally:
        rt.close()


def test_development_allows_the_local_mock_provider(
    tmp_path: Path, hostile: HostileProvider
) -> None:
    """Development allows loopback (the mock provider listens on 127.0.0.1)."""
    rt = _runtime(tmp_path)
    try:
        pk = _seed(rt, {"token_url": hostile.url})
        assert _refresh(rt, pk).outcome == "success"
    finally:
        rt.close()


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("http://169.254.169.254/latest/meta-data/iam", []),
        ("http://[::1]:8080/token", []),
        ("http://10.0.0.7/token", []),
        ("http://[::ffff:127.0.0.1]/token", []),
        ("http://metadata.google.internal/computeMetadata/v1/", ["169.254.169.254"]),
        ("https://intranet.example.com/token", ["192.168.1.20"]),
        ("https://sneaky.example.com/token", ["93.184.216.34", "127.0.0.1"]),
        ("https://user:pass@auth.example.com/token", ["93.184.216.34"]),
        ("https://auth.example.com/token#frag", ["93.184.216.34"]),
        ("https://auth.example.com/to\r\nken", ["93.184.216.34"]),
        ("https://auth.example.com/tok\x00en", ["93.184.216.34"]),
        ("ftp://auth.example.com/token", ["93.184.216.34"]),
        ("https://auth.exam_ple.com/token", ["93.184.216.34"]),
    ],
)
def test_production_policy_denies(url: str, resolved: list[str]) -> None:
    """Private, loopback, link-local and metadata addresses (literal or resolved), userinfo,
    fragments, control characters and other schemes are refused in production."""
    policy = OutboundPolicy(allow_private=False, resolver=lambda _host: resolved)
    with pytest.raises(OutboundDenied) as denied:
        policy.check(url)
    assert url not in str(denied.value)


def test_production_policy_allows_public_hosts() -> None:
    """A public host passes unchanged."""
    policy = OutboundPolicy(allow_private=False, resolver=lambda _host: ["93.184.216.34"])
    assert policy.check("https://auth.example.com/oauth/token?x=1") == (
        "https://auth.example.com/oauth/token?x=1"
    )


# -- row 9: CR/LF in the token URL ------------------------------------------------------------


def test_crlf_in_token_url_is_a_recorded_failure_not_a_500(
    tmp_path: Path, hostile: HostileProvider
) -> None:
    """A token_url with CRLF answers 400 with the failure recorded (was 500, nothing recorded)."""
    rt = _runtime(tmp_path)
    try:
        _seed(rt, {"token_url": hostile.url + "\r\nX-Injected: 1"})
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        with TestClient(create_app(rt), headers=headers, raise_server_exceptions=False) as client:
            response = client.post("/connections/c1/refresh", params={"provider_config_key": "hp"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["payload"]["error_code"] == "outbound_denied"
        assert hostile.received == []
        with rt.store() as store:
            conn = store.get_connection("hp", "c1")
            assert conn is not None and conn.last_refresh_error == "outbound_denied"
    finally:
        rt.close()


# -- row 5: provider error text is cleaned before logs, API and database -----------------------


@pytest.mark.parametrize(
    ("behaviour", "forbidden"),
    [
        ({"kind": "echo", "error": "invalid_grant"}, [REFRESH_TOKEN, CLIENT_SECRET]),
        ({"kind": "error", "error": "E" * 200_000}, ["E" * 65]),
        (
            {"kind": "error", "error": "\x1b[2J\x1b[31minvalid_grant\r\nX-Forged: 1\x1b]0;t\x07"},
            ["\x1b", "\r", "\n", "\x07"],
        ),
    ],
    ids=["echoed-secrets", "200KB", "ansi-crlf"],
)
def test_provider_error_text_is_sanitised_everywhere(
    tmp_path: Path, hostile: HostileProvider, behaviour: dict[str, Any], forbidden: list[str]
) -> None:
    """An echoed refresh token/client secret, a 200 KB error or ANSI/CRLF never reach the
    token.refresh log line, the API answer or the stored last_refresh_error."""
    hostile.behave(**behaviour)
    rt = _runtime(tmp_path)
    try:
        _seed(rt, {"token_url": hostile.url})
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        with (
            capture_logs() as logs,
            TestClient(create_app(rt), headers=headers) as client,
        ):
            response = client.post("/connections/c1/refresh", params={"provider_config_key": "hp"})
        assert response.status_code == 400
        code = response.json()["error"]["payload"]["error_code"]
        (event,) = [e for e in logs if e["event"] == "token.refresh"]
        stored = _stored_error(rt, 1)
        for text in (code, event["error_code"], stored, response.text):
            assert isinstance(text, str)
            assert len(text) < 10_000
            for bad in forbidden:
                assert bad not in text
        assert len(code) <= 64 and code == event["error_code"] == stored
    finally:
        rt.close()


def test_sanitize_keeps_ordinary_codes() -> None:
    """Ordinary OAuth error codes pass through unchanged."""
    for code in ("invalid_grant", "invalid_client", "temporarily_unavailable", "http_429"):
        assert sanitize_provider_text(code) == code
    assert sanitize_provider_text("bad\x00code") == "badcode"


# -- row 3 (partly, with #9's async rewrite): capped, incremental body reads --------------------


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "no-content-length"])
def test_huge_token_response_is_refused_without_buffering_it(
    tmp_path: Path, hostile: HostileProvider, announce: bool
) -> None:
    """A 20 MB token answer is refused (response_too_large) and nothing of it is stored."""
    hostile.behave(kind="huge", size=20 * 1024 * 1024, content_length=announce)
    rt = _runtime(tmp_path)
    try:
        pk = _seed(rt, {"token_url": hostile.url})
        result = _refresh(rt, pk)
        assert result.outcome == "failed"
        assert result.error is not None and result.error.error_code == "response_too_large"
        with rt.store() as store:
            conn = store.get_connection_by_pk(pk)
            assert conn is not None
            assert "hostile-at-huge" not in str(store.credentials(conn))
    finally:
        rt.close()


def test_read_capped_counts_bytes_as_they_arrive(hostile: HostileProvider) -> None:
    """Without Content-Length the cap is enforced on the bytes read, not on a header."""
    from freshtoken.outbound import ResponseTooLarge

    hostile.behave(kind="huge", size=3 * 1024 * 1024, content_length=False)
    with (
        httpx.Client() as http,
        http.stream("POST", hostile.url) as response,
        pytest.raises(ResponseTooLarge),
    ):
        read_capped(response, 1024 * 1024)


def test_trickled_answer_hits_the_overall_deadline(
    tmp_path: Path, hostile: HostileProvider
) -> None:
    """A provider sending one byte every 50 ms never trips the per-read timeout; the overall
    deadline (connect + read timeout) ends the attempt as a transient timeout."""
    hostile.behave(kind="trickle", delay=0.05)
    rt = _runtime(tmp_path, http_connect_timeout=0.5, http_read_timeout=1.0, lock_ttl_seconds=5)
    try:
        pk = _seed(rt, {"token_url": hostile.url})
        started = time.monotonic()
        result = _refresh(rt, pk)
        assert time.monotonic() - started < 3.0
        assert result.error is not None
        assert (result.error.error_class, result.error.error_code) == ("transient", "timeout")
    finally:
        rt.close()


# -- redirects --------------------------------------------------------------------------------


def test_redirect_is_not_followed_even_by_a_following_client() -> None:
    """A 307 to another host is a failure; the second host never sees the secret, even when the
    injected HTTP client would follow redirects."""
    with HostileProvider() as first, HostileProvider() as second:
        first.behave(kind="redirect", location=second.url)
        spec = catalog.get("oauth2")
        assert spec is not None
        req = GrantRequest(
            spec=spec,
            connection_config={"token_url": first.url},
            client_id="cid",
            client_secret=CLIENT_SECRET,
        )
        with httpx.Client(follow_redirects=True) as http, pytest.raises(GrantError) as e:
            refresh_oauth2(
                http,
                req,
                {"refresh_token": REFRESH_TOKEN},
                sent_at=dt.datetime.now(dt.UTC),
                default_lifetime=60,
            )
        assert len(first.received) == 1
        assert second.received == []
        assert e.value.http_status == 307


def test_ops_report_never_prints_escapes_from_old_log_lines() -> None:
    """A log line written before sanitising (ANSI, CRLF, 200 KB in error_code) is printed by
    ``freshtoken report`` without escapes or control characters, and bounded."""
    import orjson

    from freshtoken.ops_report import LogStats, summary_lines

    stats = LogStats()
    evil = "\x1b[2J\x1b[31mboom\r\nforged line" + "E" * 200_000
    line = {
        "event": "token.refresh",
        "level": "warning",
        "logger": "freshtoken.refresh",
        "timestamp": "2026-03-01T09:30:00.000000Z",
        "connection_id": "c\x1b[1m1",
        "connection_pk": 1,
        "provider_config_key": "hp",
        "provider": "oauth2",
        "trigger": "scheduled",
        "outcome": "failed",
        "error_code": evil,
        "error_class": "permanent",
        "duration_ms": 1.0,
        "attempt": 1,
        "log_id": "l" * 20,
    }
    stats.feed(orjson.dumps(line))
    text = "\n".join(summary_lines(stats, 10))
    assert "boom" in text
    assert "\x1b" not in text and "\r" not in text
    assert len(text) < 20_000


def test_webhook_urls_go_through_the_same_policy(tmp_path: Path) -> None:
    """Webhook delivery refuses what token requests refuse: private addresses in production
    (unless allowed), userinfo and control characters everywhere."""
    from freshtoken.webhooks.delivery import OutboundRefusedError, check_outbound

    production = make_settings(tmp_path, env="production", secret_key=STRONG_KEY)
    with pytest.raises(OutboundRefusedError):
        check_outbound("http://127.0.0.1:9/hook", production)
    with pytest.raises(OutboundRefusedError):
        check_outbound("http://169.254.169.254/latest/meta-data", production)
    allowed = make_settings(
        tmp_path, env="production", secret_key=STRONG_KEY, outbound_allow_hosts="127.0.0.1"
    )
    check_outbound("http://127.0.0.1:9/hook", allowed)
    development = make_settings(tmp_path)
    check_outbound("http://127.0.0.1:9/hook", development)
    for bad in ("http://user:pw@hooks.example.com/x", "http://hooks.example.com/x\r\nX: 1"):
        with pytest.raises(OutboundRefusedError):
            check_outbound(bad, development)


def test_send_is_the_choke_point_for_every_grant(hostile: HostileProvider) -> None:
    """Auth-mode grants build their own TokenRequest: grants.send still applies the policy
    (nothing sent to a refused URL) and redacts echoed secrets from the error code."""
    from freshtoken.refresh.grants import TokenRequest, send

    spec = catalog.get("oauth2")
    assert spec is not None
    refused = TokenRequest(
        url=hostile.url,
        headers={},
        params={"refresh_token": REFRESH_TOKEN},
        outbound=OutboundPolicy(allow_private=False),
    )
    with httpx.Client() as http, pytest.raises(GrantError) as denied:
        send(http, spec, refused)
    assert denied.value.error_code == "outbound_denied"
    assert hostile.received == []
    hostile.behave(kind="echo", error="invalid_grant")
    echoed = TokenRequest(
        url=hostile.url,
        headers={},
        params={"refresh_token": REFRESH_TOKEN, "client_secret": CLIENT_SECRET},
    )
    with httpx.Client() as http, pytest.raises(GrantError) as failed:
        send(http, spec, echoed)
    assert REFRESH_TOKEN not in failed.value.error_code
    assert CLIENT_SECRET not in failed.value.error_code
