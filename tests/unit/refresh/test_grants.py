"""Token-endpoint grants and failure classification, against the real HTTP mock provider."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.utils
import json
import socket
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.providers.catalog import ProviderSpec, load_catalog
from freshtoken.refresh.grants import (
    PERMANENT,
    TRANSIENT,
    GrantError,
    GrantRequest,
    aclient_credentials,
    arefresh_oauth2,
    classify,
    expiry_from,
)
from freshtoken.refresh.http import ProviderHttp
from freshtoken.settings import Settings
from freshtoken.store.credentials import parse_datetime

CLIENT_ID = "grant-client"
CLIENT_SECRET = "grant-secret-Zq81xPl0w"
SENT_AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
LIFETIME = 3600.0
ANY_RT = "rt-unknown-to-the-provider"

catalog = load_catalog()


@pytest.fixture
def mock() -> Iterator[MockProvider]:
    """A real HTTP mock provider that knows this module's client id and secret."""
    config = MockProviderConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with MockProvider(config) as provider:
        yield provider


@pytest.fixture
def http() -> Iterator[ProviderHttp]:
    """The real provider HTTP client with short timeouts (an injected hang fails fast)."""
    yield ProviderHttp(Settings(http_connect_timeout=2.0, http_read_timeout=0.5))


def _spec(name: str, token_url: str, **changes: Any) -> ProviderSpec:
    spec = catalog.get(name)
    assert spec is not None, name
    return dataclasses.replace(spec, token_url=token_url, refresh_url=None, **changes)


def _request(
    name: str,
    token_url: str,
    *,
    client_id: str | None = CLIENT_ID,
    client_secret: str | None = CLIENT_SECRET,
    connection_config: dict[str, Any] | None = None,
    **changes: Any,
) -> GrantRequest:
    return GrantRequest(
        spec=_spec(name, token_url, **changes),
        connection_config=connection_config or {},
        client_id=client_id,
        client_secret=client_secret,
    )


def _refresh(
    http: ProviderHttp, req: GrantRequest, refresh_token: str
) -> tuple[dict[str, Any], bool]:
    return asyncio.run(
        arefresh_oauth2(
            http,
            req,
            {"type": "OAUTH2", "refresh_token": refresh_token},
            sent_at=SENT_AT,
            default_lifetime=LIFETIME,
        )
    )


def _fail(http: ProviderHttp, req: GrantRequest, refresh_token: str = ANY_RT) -> GrantError:
    with pytest.raises(GrantError) as caught:
        _refresh(http, req, refresh_token)
    return caught.value


class _Spy:
    """An httpx transport that records every request and answers with a canned response."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond or (
            lambda _req: httpx.Response(
                200, json={"access_token": "spy-at", "expires_in": 60, "refresh_token": "spy-rt2"}
            )
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)

    def client(self) -> contextlib.nullcontext[ProviderHttp]:
        return contextlib.nullcontext(
            ProviderHttp(Settings(), transport=httpx.MockTransport(self.handler))
        )

    @property
    def form(self) -> dict[str, str]:
        (request,) = self.requests
        assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
        parsed = parse_qs(request.content.decode(), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}


SPY_URL = "https://provider.test/oauth/token"


# -- client authentication ------------------------------------------------------------------


def test_body_client_auth_succeeds_and_rotates(mock: MockProvider, http: ProviderHttp) -> None:
    """A spec without token_request_auth_method sends id and secret in the body and refreshes."""
    family = mock.seed()
    creds, rotated = _refresh(http, _request("asana", mock.token_url), family["refresh_token"])
    assert rotated is True
    assert mock.is_access_token_valid(creds["access_token"])
    assert creds["refresh_token"] == mock.current_refresh_token(family["refresh_token"])
    assert creds["refresh_token"] != family["refresh_token"]
    assert creds["type"] == "OAUTH2"
    assert mock.stats()["client_auth_used"] == {"basic": 0, "body": 1}


def test_body_auth_against_basic_only_provider_is_permanent_invalid_client(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """A provider that only accepts HTTP Basic rejects body auth: permanent invalid_client."""
    mock.configure(client_auth="basic")
    family = mock.seed()
    error = _fail(http, _request("asana", mock.token_url), family["refresh_token"])
    assert (error.error_class, error.error_code, error.http_status) == (
        PERMANENT,
        "invalid_client",
        401,
    )
    assert error.permanent


def test_basic_spec_authenticates_with_http_basic(mock: MockProvider, http: ProviderHttp) -> None:
    """token_request_auth_method: basic succeeds against a Basic-only provider."""
    mock.configure(client_auth="basic")
    family = mock.seed()
    creds, _ = _refresh(http, _request("airtable", mock.token_url), family["refresh_token"])
    assert mock.is_access_token_valid(creds["access_token"])
    assert mock.stats()["client_auth_used"] == {"basic": 1, "body": 0}


def test_basic_auth_encodes_special_characters(mock: MockProvider, http: ProviderHttp) -> None:
    """A secret containing ':', '/', '+' and '=' survives HTTP Basic (form-encoded first)."""
    secret = "s3cr:t/+="
    mock.configure(client_auth="basic", client_secret=secret)
    family = mock.seed()
    req = _request("airtable", mock.token_url, client_secret=secret)
    creds, _ = _refresh(http, req, family["refresh_token"])
    assert mock.is_access_token_valid(creds["access_token"])


def test_basic_auth_keeps_the_secret_out_of_the_body() -> None:
    """With Basic auth the body carries neither client_id nor client_secret."""
    spy = _Spy()
    with spy.client() as client:
        _refresh(client, _request("airtable", SPY_URL), "rt-1")
    assert spy.requests[0].headers["authorization"].startswith("Basic ")
    assert "client_secret" not in spy.form and "client_id" not in spy.form


# -- what is sent ---------------------------------------------------------------------------


def test_refresh_params_fall_back_to_token_params() -> None:
    """Without refresh_params the token_params are sent; grant_type and refresh_token win."""
    spy = _Spy()
    req = _request(
        "asana",
        SPY_URL,
        token_params={"grant_type": "authorization_code", "audience": "api.test", "n": "1"},
        refresh_params={},
    )
    with spy.client() as client:
        _refresh(client, req, "rt-presented")
    assert spy.form == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-presented",
        "audience": "api.test",
        "n": "1",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert spy.requests[0].headers["accept"] == "application/json"
    assert "authorization" not in spy.requests[0].headers


def test_refresh_params_replace_token_params_when_set() -> None:
    """With refresh_params set, only they are sent (token_params are for the code exchange)."""
    spy = _Spy()
    req = _request(
        "asana", SPY_URL, token_params={"only_token": "x"}, refresh_params={"only_refresh": "y"}
    )
    with spy.client() as client:
        _refresh(client, req, "rt-presented")
    assert spy.form["only_refresh"] == "y"
    assert "only_token" not in spy.form


def test_json_body_format_posts_json() -> None:
    """body_format json sends the same parameters as a JSON object."""
    spy = _Spy()
    req = _request("asana", SPY_URL, body_format="json", refresh_params={"extra": "1"})
    with spy.client() as client:
        _refresh(client, req, "rt-json")
    (request,) = spy.requests
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "extra": "1",
        "grant_type": "refresh_token",
        "refresh_token": "rt-json",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


def test_refresh_url_is_preferred_over_token_url() -> None:
    """A spec with a refresh_url refreshes there, not at the token_url."""
    spy = _Spy()
    req = _request("asana", SPY_URL)
    req = dataclasses.replace(
        req, spec=dataclasses.replace(req.spec, refresh_url="https://provider.test/refresh")
    )
    with spy.client() as client:
        _refresh(client, req, "rt-1")
    assert str(spy.requests[0].url) == "https://provider.test/refresh"


def test_missing_refresh_token_in_response_keeps_the_old_one() -> None:
    """A token response without a refresh_token keeps the presented one and reports no rotation."""
    spy = _Spy(lambda _r: httpx.Response(200, json={"access_token": "at-2", "expires_in": 60}))
    with spy.client() as client:
        creds, rotated = _refresh(client, _request("asana", SPY_URL), "rt-kept")
    assert (creds["refresh_token"], rotated) == ("rt-kept", False)


# -- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ],
)
def test_rfc6749_dead_grant_codes_are_permanent(
    mock: MockProvider, http: ProviderHttp, code: str
) -> None:
    """The RFC 6749 errors no retry can fix are classified permanent."""
    mock.inject("custom", body={"error": code, "error_description": "nope"})
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.error_code, error.http_status) == (PERMANENT, code, 400)


@pytest.mark.parametrize("kind", ["invalid_grant", "invalid_client"])
def test_injected_dead_grants_are_permanent(
    mock: MockProvider, http: ProviderHttp, kind: str
) -> None:
    """The mock's invalid_grant (400) and invalid_client (401) answers are permanent."""
    mock.inject(kind)
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.error_code) == (PERMANENT, kind)


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503)])
def test_server_errors_are_transient(
    mock: MockProvider, http: ProviderHttp, kind: str, status: int
) -> None:
    """5xx answers are transient and keep their HTTP status."""
    mock.inject(kind)
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.http_status) == (TRANSIENT, status)


def test_timeout_is_transient(mock: MockProvider, http: ProviderHttp) -> None:
    """A provider that never answers within the read timeout is a transient 'timeout'."""
    mock.inject("timeout")
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.error_code, error.http_status) == (TRANSIENT, "timeout", None)


def test_connection_refused_is_transient(http: ProviderHttp) -> None:
    """A closed port (connection refused) is a transient connection_error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = _fail(http, _request("asana", f"http://127.0.0.1:{port}/oauth/token"))
    assert (error.error_class, error.error_code) == (TRANSIENT, "connection_error")


def test_non_json_200_is_transient(mock: MockProvider, http: ProviderHttp) -> None:
    """An HTML page with status 200 is a transient invalid_response, not a token."""
    mock.inject("non_json")
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.error_code, error.http_status) == (
        TRANSIENT,
        "invalid_response",
        200,
    )


def test_200_without_a_token_is_transient() -> None:
    """A 200 JSON body with neither a token nor an error code is a transient invalid_response."""
    spy = _Spy(lambda _r: httpx.Response(200, json={"token_type": "Bearer"}))
    with spy.client() as client:
        error = _fail(client, _request("asana", SPY_URL))
    assert (error.error_class, error.error_code) == (TRANSIENT, "invalid_response")


def test_rate_limit_is_transient_with_retry_after_seconds(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """A 429 is transient rate_limited and carries the Retry-After seconds."""
    mock.inject("429", retry_after=7)
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.error_code, error.http_status, error.retry_after) == (
        TRANSIENT,
        "rate_limited",
        429,
        7.0,
    )


def test_retry_after_http_date_is_parsed() -> None:
    """A Retry-After given as an HTTP date becomes the seconds until that date."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    header = email.utils.format_datetime(when, usegmt=True)
    spec = _spec("asana", SPY_URL)
    error = classify(spec, 429, {"error": "rate_limited"}, {"retry-after": header})
    assert error.retry_after is not None and 100 <= error.retry_after <= 121


def test_unparseable_retry_after_is_still_a_transient_rate_limit() -> None:
    """A 429 with a garbage Retry-After header is transient rate_limited without a delay."""
    spy = _Spy(lambda _r: httpx.Response(429, headers={"Retry-After": "soon"}))
    with spy.client() as client:
        error = _fail(client, _request("asana", SPY_URL))
    assert (error.error_class, error.error_code, error.retry_after) == (
        TRANSIENT,
        "rate_limited",
        None,
    )


def test_retry_after_date_without_zone_is_handled() -> None:
    """A Retry-After date in the '-0000' (unknown zone) form is parsed, not a crash."""
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    header = email.utils.format_datetime(when.replace(tzinfo=None))
    assert header.endswith("-0000")
    error = classify(_spec("asana", SPY_URL), 429, None, {"retry-after": header})
    assert error.error_class == TRANSIENT


def test_slack_ok_false_is_permanent_with_the_slack_spec(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """Slack's HTTP 200 {"ok": false, "error": "invalid_refresh_token"} is permanent."""
    mock.inject("slack_ok_false")
    error = _fail(http, _request("slack", mock.token_url))
    assert (error.error_class, error.error_code) == (PERMANENT, "invalid_refresh_token")


def test_slack_ok_false_with_a_transient_code_is_transient(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """Slack's ok:false 'ratelimited' is in the entry's transient list."""
    mock.inject("slack_ok_false", body={"ok": False, "error": "ratelimited"})
    error = _fail(http, _request("slack", mock.token_url))
    assert (error.error_class, error.error_code) == (TRANSIENT, "ratelimited")


def test_ok_false_body_without_slack_spec_is_not_permanent(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """The same ok:false body from a provider without the Slack rules counts toward exhaustion."""
    mock.inject("slack_ok_false")
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.error_code) == (TRANSIENT, "invalid_refresh_token")


def test_hubspot_bad_refresh_token_is_permanent(mock: MockProvider, http: ProviderHttp) -> None:
    """HubSpot's 400 {"status": "BAD_REFRESH_TOKEN"} is permanent with the hubspot spec."""
    mock.inject("hubspot_bad_refresh")
    error = _fail(http, _request("hubspot", mock.token_url))
    assert (error.error_class, error.error_code, error.http_status) == (
        PERMANENT,
        "BAD_REFRESH_TOKEN",
        400,
    )


def test_provider_transient_override_wins(mock: MockProvider, http: ProviderHttp) -> None:
    """A code the provider lists as transient stays transient even if RFC 6749 calls it dead."""
    mock.inject("invalid_grant")
    req = _request("asana", mock.token_url, transient_error_codes=frozenset({"invalid_grant"}))
    error = _fail(http, req)
    assert (error.error_class, error.error_code) == (TRANSIENT, "invalid_grant")


def test_provider_permanent_code_extends_the_table(mock: MockProvider, http: ProviderHttp) -> None:
    """Exact Online's 'invalid_request' is permanent for that provider only."""
    mock.inject("custom", body={"error": "invalid_request"})
    error = _fail(http, _request("exact-online", mock.token_url))
    assert (error.error_class, error.error_code) == (PERMANENT, "invalid_request")


@pytest.mark.parametrize("status", [401, 403])
def test_unexplained_401_is_permanent_invalid_client(status: int) -> None:
    """A 401/403 without an error code means the client was refused: permanent invalid_client."""
    spy = _Spy(lambda _r: httpx.Response(status, text="<html>Unauthorized</html>"))
    with spy.client() as client:
        error = _fail(client, _request("asana", SPY_URL))
    assert (error.error_class, error.error_code, error.http_status) == (
        PERMANENT,
        "invalid_client",
        status,
    )


def test_unlisted_400_code_is_transient(mock: MockProvider, http: ProviderHttp) -> None:
    """An unlisted 400 code (invalid_request) is transient so it counts toward exhaustion."""
    mock.inject("custom", body={"error": "invalid_request"})
    error = _fail(http, _request("asana", mock.token_url))
    assert (error.error_class, error.error_code, error.http_status) == (
        TRANSIENT,
        "invalid_request",
        400,
    )


def test_400_without_a_code_is_transient_http_400() -> None:
    """A bare 400 with no error body is transient and named after its status."""
    spy = _Spy(lambda _r: httpx.Response(400))
    with spy.client() as client:
        error = _fail(client, _request("asana", SPY_URL))
    assert (error.error_class, error.error_code) == (TRANSIENT, "http_400")


def test_nested_error_object_code_is_read() -> None:
    """An {"error": {"code": ...}} body is classified by its inner code."""
    spy = _Spy(lambda _r: httpx.Response(400, json={"error": {"code": "invalid_grant"}}))
    with spy.client() as client:
        error = _fail(client, _request("asana", SPY_URL))
    assert (error.error_class, error.error_code) == (PERMANENT, "invalid_grant")


# -- expiry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ({"expires_in": 3600}, 3600.0),
        ({"expires_in": 1800.5}, 1800.5),
        ({"expires_in": "3600"}, 3600.0),
        ({"expires_in": " 120 "}, 120.0),
        ({}, LIFETIME),
        ({"expires_in": None}, LIFETIME),
        ({"expires_in": "soon"}, LIFETIME),
    ],
)
def test_relative_expiry_is_measured_from_sent_at(body: dict[str, Any], seconds: float) -> None:
    """expires_in (int, float, numeric string) counts from sent_at; missing means the default."""
    assert expiry_from(body, SENT_AT, LIFETIME) == SENT_AT + dt.timedelta(seconds=seconds)


ABSOLUTE = dt.datetime(2030, 1, 1, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "expires_at",
    [
        "2030-01-01T00:00:00Z",
        "2030-01-01T01:00:00+01:00",
        int(ABSOLUTE.timestamp()),
        str(int(ABSOLUTE.timestamp())),
        int(ABSOLUTE.timestamp() * 1000),
    ],
)
def test_absolute_expiry_wins(expires_at: Any) -> None:
    """An absolute expires_at (ISO, epoch seconds or ms) is used as-is, ignoring expires_in."""
    body = {"expires_at": expires_at, "expires_in": 60}
    assert expiry_from(body, SENT_AT, LIFETIME) == ABSOLUTE


def test_refreshed_credentials_expire_from_the_send_time(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """The stored expires_at is sent_at + expires_in, not the time the answer arrived."""
    family = mock.seed()
    creds, _ = _refresh(http, _request("asana", mock.token_url), family["refresh_token"])
    assert parse_datetime(creds["expires_at"]) == SENT_AT + dt.timedelta(seconds=3600)
    assert creds["raw"]["expires_in"] == 3600


def test_missing_expires_in_gets_the_default_lifetime(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """A real response without expires_in gets the default lifetime, never 'no expiry'."""
    mock.configure(omit_expires_in=True)
    family = mock.seed()
    creds, _ = _refresh(http, _request("asana", mock.token_url), family["refresh_token"])
    assert parse_datetime(creds["expires_at"]) == SENT_AT + dt.timedelta(seconds=LIFETIME)


def test_string_expires_in_from_the_provider(mock: MockProvider, http: ProviderHttp) -> None:
    """A real response with expires_in as a string is parsed."""
    mock.configure(expires_in_as_string=True, token_lifetime_seconds=900)
    family = mock.seed()
    creds, _ = _refresh(http, _request("asana", mock.token_url), family["refresh_token"])
    assert parse_datetime(creds["expires_at"]) == SENT_AT + dt.timedelta(seconds=900)


# -- templated URLs -------------------------------------------------------------------------


def test_templated_token_url_with_missing_key_is_permanent(http: ProviderHttp) -> None:
    """okta's ${connectionConfig.subdomain} without a subdomain is missing_connection_config."""
    spec = catalog.get("okta")
    assert spec is not None and "${connectionConfig.subdomain}" in (spec.token_url or "")
    req = GrantRequest(
        spec=spec, connection_config={}, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    error = _fail(http, req, refresh_token="rt-okta-secret-value")
    assert (error.error_class, error.error_code) == (PERMANENT, "missing_connection_config")
    rendered = str(error) + repr(error) + "".join(traceback.format_exception(error))
    for secret in (CLIENT_SECRET, "rt-okta-secret-value"):
        assert secret not in rendered


def test_templated_token_url_is_filled_from_connection_config(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """The generic oauth2 entry takes its whole token URL from connection_config."""
    family = mock.seed()
    spec = catalog.get("oauth2")
    assert spec is not None
    req = GrantRequest(
        spec=spec,
        connection_config={"token_url": mock.token_url},
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    creds, _ = _refresh(http, req, family["refresh_token"])
    assert mock.is_access_token_valid(creds["access_token"])


# -- client credentials ---------------------------------------------------------------------


def test_client_credentials_sends_grant_and_scopes() -> None:
    """OAUTH2_CC sends grant_type=client_credentials and comma scopes as a space list."""
    spy = _Spy(lambda _r: httpx.Response(200, json={"access_token": "cc-at", "expires_in": 60}))
    req = _request("oauth2-cc", SPY_URL, connection_config={"oauth_scopes": "read, write,admin"})
    with spy.client() as client:
        creds = asyncio.run(
            aclient_credentials(
                client,
                req,
                {"type": "OAUTH2_CC", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                sent_at=SENT_AT,
                default_lifetime=LIFETIME,
            )
        )
    assert spy.form == {
        "grant_type": "client_credentials",
        "scope": "read write admin",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert creds["type"] == "OAUTH2_CC" and creds["token"] == "cc-at"
    assert parse_datetime(creds["expires_at"]) == SENT_AT + dt.timedelta(seconds=60)


def test_client_credentials_against_the_mock(mock: MockProvider, http: ProviderHttp) -> None:
    """A real client-credentials grant returns a valid token and keeps the client credentials."""
    req = _request("oauth2-cc", mock.token_url, connection_config={"oauth_scopes": "a,b"})
    stored = {"type": "OAUTH2_CC", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    creds = asyncio.run(
        aclient_credentials(http, req, stored, sent_at=SENT_AT, default_lifetime=LIFETIME)
    )
    assert mock.is_access_token_valid(creds["token"])
    assert creds["raw"]["scope"] == "a b"
    assert (creds["client_id"], creds["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    assert mock.stats()["client_credentials_calls"] == 1


# -- no secrets in errors -------------------------------------------------------------------


def test_grant_errors_never_contain_tokens_or_secrets(
    mock: MockProvider, http: ProviderHttp
) -> None:
    """Every failure's message, repr and traceback is free of the RT, AT and client secret."""
    family = mock.seed()
    rt, at = family["refresh_token"], family["access_token"]
    echo = {"error": "invalid_grant", "error_description": f"bad {rt} {at} {CLIENT_SECRET}"}
    errors: list[GrantError] = []
    for kind, body in [
        ("custom", echo),
        ("custom", {"error": "invalid_request", "refresh_token": rt, "access_token": at}),
        ("500", {"error": "server_error", "echo": f"refresh_token={rt}"}),
        ("429", None),
        ("timeout", None),
        ("non_json", None),
        ("invalid_client", None),
        ("hubspot_bad_refresh", None),
    ]:
        mock.inject(kind, body=body)
        errors.append(_fail(http, _request("asana", mock.token_url), rt))
    mock.configure(client_auth="basic")
    errors.append(_fail(http, _request("asana", mock.token_url), rt))
    assert len({e.error_code for e in errors}) >= 7
    for error in errors:
        rendered = " ".join(
            [str(error), repr(error), *map(str, error.args), *traceback.format_exception(error)]
        )
        for secret in (rt, at, CLIENT_SECRET):
            assert secret not in rendered, error.error_code
