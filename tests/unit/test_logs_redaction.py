"""Log redaction: JSON lines from structlog and stdlib loggers never carry a token or secret."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from tests.support import (
    ENCRYPTION_KEY,
    SECRET_KEY,
    add_oauth2_connection,
    make_runtime,
    make_settings,
)

from freshtoken import logs
from freshtoken.logs import REDACTED, configure_logging, get_logger
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.refresh.http import ProviderHttp
from freshtoken.store.credentials import iso

_NAMED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "httpx", "httpcore")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo configure_logging's global changes so other tests keep pytest's capture."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_named = {
        name: (lg.handlers[:], lg.propagate, lg.level)
        for name in _NAMED_LOGGERS
        for lg in [logging.getLogger(name)]
    }
    saved_config = structlog.get_config()
    saved_secrets = set(logs._registered)
    yield
    root.handlers[:], level = saved_root
    root.setLevel(level)
    for name, (handlers, propagate, lvl) in saved_named.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.setLevel(lvl)
    structlog.configure(**saved_config)
    logs._registered.clear()
    logs._registered.update(saved_secrets)


def _configure(level: str = "INFO", secrets: Iterable[str | None] = ()) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, "json", stream=stream, secrets=secrets)
    return stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line parsed; each must be exactly one JSON object."""
    parsed = []
    for line in stream.getvalue().splitlines():
        value = json.loads(line)  # raises on a line that is not exactly one JSON document
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed


def _one(stream: io.StringIO) -> dict[str, Any]:
    (line,) = _lines(stream)
    return line


# -- field names ----------------------------------------------------------------------------


def test_secret_named_fields_are_redacted_at_any_depth() -> None:
    """access_token, refresh_token, client_secret, password, apiKey, ... are masked anywhere."""
    stream = _configure()
    get_logger("tests.redaction").info(
        "evt",
        access_token="AT-top-111",
        refresh_token="RT-top-222",
        client_secret="CS-top-333",
        password="PW-top-444",
        apiKey="AK-top-555",
        Authorization="Bearer BEARER-top-666",
        encryption_key="EK-top-777",
        nested={
            "refresh_token": "RT-deep-888",
            "headers": {"authorization": "Basic BASIC-deep-999", "X-Other": "fine"},
            "items": [{"client_secret": "CS-list-000"}, {"api_key": "AK-list-111"}],
            "credentials": {"type": "BASIC", "username": "bob", "password": "PW-deep-222"},
        },
    )
    raw = stream.getvalue()
    line = _one(stream)
    for field in (
        "access_token",
        "refresh_token",
        "client_secret",
        "password",
        "apiKey",
        "Authorization",
        "encryption_key",
    ):
        assert line[field] == REDACTED, field
    nested = line["nested"]
    assert nested["refresh_token"] == REDACTED
    assert nested["headers"] == {"authorization": REDACTED, "X-Other": "fine"}
    assert nested["items"] == [{"client_secret": REDACTED}, {"api_key": REDACTED}]
    assert nested["credentials"] == {"type": "BASIC", "username": "bob", "password": REDACTED}
    for marker in ("-top-", "-deep-", "-list-"):
        assert marker not in raw


def test_secret_named_fields_are_redacted_whatever_their_shape() -> None:
    """A list or dict stored under a secret-named key does not leak its values."""
    stream = _configure()
    get_logger("tests.redaction").info(
        "evt",
        encryption_old_keys=["OLDKEY-one-aaaa", "OLDKEY-two-bbbb"],
        token={"value": "TOKVAL-cccc"},
    )
    raw = stream.getvalue()
    assert "OLDKEY-" not in raw and "TOKVAL-" not in raw


def test_benign_fields_are_untouched() -> None:
    """Fields that merely mention tokens (flags, codes, ids) keep their values."""
    stream = _configure()
    get_logger("tests.redaction").warning(
        "token.refresh",
        rotated_refresh_token=True,
        has_refresh_token=False,
        error_code="invalid_grant",
        error_class="permanent",
        connection_id="conn-benign-1",
        provider_config_key="github",
        token_type="Bearer",
        refresh_token=None,
        http_status=400,
    )
    line = _one(stream)
    assert line["event"] == "token.refresh"
    assert line["rotated_refresh_token"] is True
    assert line["has_refresh_token"] is False
    assert line["error_code"] == "invalid_grant"
    assert line["error_class"] == "permanent"
    assert line["connection_id"] == "conn-benign-1"
    assert line["provider_config_key"] == "github"
    assert line["token_type"] == "Bearer"
    assert line["refresh_token"] is None
    assert line["http_status"] == 400
    assert line["level"] == "warning" and line["logger"] == "tests.redaction"


# -- free text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("refreshing with refresh_token=RTINLINE111 now", "RTINLINE111"),
        ("callback?access_token=ATQUERY222&state=ok", "ATQUERY222"),
        ('provider said {"access_token": "ATJSON333", "token_type": "bearer"}', "ATJSON333"),
        ("got {'refresh_token': 'RTREPR444', 'expires_in': 3600}", "RTREPR444"),
        ("client_secret: CSCOLON555", "CSCOLON555"),
        ("header Authorization: Bearer BEARER666.abc-def", "BEARER666"),
        ("header Authorization: Basic dXNlcjpQV0JBU0lDNzc3", "dXNlcjpQV0JBU0lDNzc3"),
        ("id_token=IDTOK888 password=PWINLINE999", "IDTOK888"),
        ("id_token=IDTOK888 password=PWINLINE999", "PWINLINE999"),
    ],
)
def test_inline_secrets_in_messages_are_redacted(message: str, secret: str) -> None:
    """key=value, JSON, dict-repr and auth-scheme forms inside the message are masked."""
    stream = _configure()
    get_logger("tests.redaction").info(message)
    line = _one(stream)
    assert secret not in stream.getvalue()
    assert REDACTED in line["event"]


def test_escaped_json_in_messages_is_redacted() -> None:
    """A JSON document embedded as an escaped string still has its tokens masked."""
    stream = _configure()
    get_logger("tests.redaction").info('body="{\\"refresh_token\\": \\"RTESCAPED123\\"}"')
    assert "RTESCAPED123" not in stream.getvalue()


def test_inline_secrets_in_field_values_are_redacted() -> None:
    """Strings in benign fields are scrubbed too (e.g. an error description echoing a token)."""
    stream = _configure()
    get_logger("tests.redaction").info(
        "evt", detail="rejected refresh_token=RTFIELD123", items=["Bearer BEARERLIST456"]
    )
    raw = stream.getvalue()
    assert "RTFIELD123" not in raw and "BEARERLIST456" not in raw
    assert _one(stream)["detail"] == f"rejected refresh_token={REDACTED}"


def test_exception_tracebacks_are_redacted() -> None:
    """An exception message carrying tokens is masked in the rendered traceback."""
    stream = _configure()
    creds = {"access_token": "ATEXC111", "refresh_token": "RTEXC222"}
    try:
        raise RuntimeError(f"provider answered {creds!r} with Authorization: Bearer BEAREREXC333")
    except RuntimeError:
        get_logger("tests.redaction").exception("refresh.crashed")
    raw = stream.getvalue()
    line = _one(stream)
    assert "RuntimeError" in line["exception"]
    assert "Traceback" in line["exception"]
    for secret in ("ATEXC111", "RTEXC222", "BEAREREXC333"):
        assert secret not in raw


def test_registered_secrets_are_scrubbed_everywhere() -> None:
    """Values passed to configure_logging(secrets=...) vanish from messages, fields and traces."""
    api_key = "ft_sk_" + secrets.token_urlsafe(16)
    enc_key = secrets.token_urlsafe(24)
    stream = _configure(secrets=[api_key, enc_key, None])
    log = get_logger("tests.redaction")
    log.info(f"started with {api_key}", note=f"key {enc_key} loaded", plain=[api_key])
    try:
        raise ValueError(f"bad key {enc_key}")
    except ValueError:
        log.exception("boom")
    raw = stream.getvalue()
    assert len(_lines(stream)) == 2
    assert api_key not in raw and enc_key not in raw
    assert raw.count(REDACTED) >= 4


# -- stdlib loggers -------------------------------------------------------------------------


def test_stdlib_loggers_are_json_and_redacted() -> None:
    """uvicorn, httpx and celery records come out as JSON through the same redaction."""
    stream = _configure("DEBUG")
    logging.getLogger("uvicorn.error").info("Started with access_token=UVAT111")
    logging.getLogger("httpx").warning("retrying with Authorization: Bearer HXBEARER222")
    logging.getLogger("celery").info("task args %r", {"refresh_token": "CELRT333"})
    logging.getLogger("celery.worker").warning("extra", extra={"client_secret": "CELCS444"})
    try:
        raise KeyError("password=CELPW555")
    except KeyError:
        logging.getLogger("celery").exception("task failed")
    raw = stream.getvalue()
    lines = _lines(stream)
    assert [line["logger"] for line in lines] == [
        "uvicorn.error",
        "httpx",
        "celery",
        "celery.worker",
        "celery",
    ]
    assert lines[1]["level"] == "warning"
    assert lines[3]["client_secret"] == REDACTED
    assert "KeyError" in lines[4]["exception"]
    for secret in ("UVAT111", "HXBEARER222", "CELRT333", "CELCS444", "CELPW555"):
        assert secret not in raw


def test_httpx_request_lines_are_not_logged_at_info() -> None:
    """httpx's per-request INFO lines (URLs can carry templated values) are dropped."""
    stream = _configure("DEBUG")
    logging.getLogger("httpx").info('HTTP Request: POST https://acme.okta.com/token "200 OK"')
    logging.getLogger("httpcore.http11").debug("send_request_body.started")
    assert stream.getvalue() == ""


def test_each_line_is_exactly_one_json_object() -> None:
    """Multi-line messages and tracebacks stay on one line each."""
    stream = _configure()
    log = get_logger("tests.redaction")
    log.info("first\nsecond\nthird", extra_field="a\nb")
    try:
        raise ValueError("multi\nline\nerror")
    except ValueError:
        log.exception("with traceback")
    logging.getLogger("uvicorn.error").error("stdlib\nmultiline")
    text = stream.getvalue()
    assert text.endswith("\n")
    lines = _lines(stream)
    assert len(lines) == 3 == len(text.splitlines())
    assert lines[0]["event"] == "first\nsecond\nthird"


# -- the leak test --------------------------------------------------------------------------


def test_no_secret_reaches_the_logs_or_stdio_in_a_realistic_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A DEBUG run through success, failures, crashes and CC grants leaks no token or key."""
    stream = _configure("DEBUG", secrets=[SECRET_KEY, ENCRYPTION_KEY])
    client_secret = "cs-" + secrets.token_urlsafe(24)
    leaked: set[str] = {SECRET_KEY, ENCRYPTION_KEY, client_secret}
    settings = make_settings(
        tmp_path,
        http_connect_timeout=0.5,
        http_read_timeout=0.5,
        lock_ttl_seconds=3.0,
        lock_wait_seconds=2.0,
        # Every trigger takes a rate-limit slot now, and this TTL leaves a scheduled refresh no
        # time to wait for one: unlimited, so each refresh reaches the provider as the test needs.
        provider_rate_limit_per_second=0,
    )
    config = MockProviderConfig(client_id="leak-client", client_secret=client_secret)
    with MockProvider(config) as provider:
        rt = make_runtime(settings)
        exploding = ProviderHttp(settings, transport=httpx.MockTransport(_explode))
        try:
            service = rt.require_refresh_service()
            log = get_logger("tests.leak")
            pks: dict[str, int] = {}
            for name in ("ok", "dead", "flaky", "slow", "orphan", "crash"):
                pk, family = add_oauth2_connection(
                    rt, provider, connection_id=f"leak-{name}", expires_in=-1
                )
                pks[name] = pk
                leaked.update((family["access_token"], family["refresh_token"]))

            ok = service.refresh(pks["ok"], trigger="manual", force=True)
            assert ok.outcome == "success"
            leaked.update((ok.credentials["access_token"], ok.credentials["refresh_token"]))

            provider.inject("invalid_grant")
            dead = service.refresh(pks["dead"], trigger="scheduled")
            provider.inject("500")
            flaky = service.refresh(pks["flaky"], trigger="on_read")
            provider.inject("timeout")
            slow = service.refresh(pks["slow"], trigger="manual", force=True)
            assert [r.error.error_code if r.error else None for r in (dead, flaky, slow)] == [
                "invalid_grant",
                "server_error",
                "timeout",
            ]

            cc_seed = "cc-at-" + secrets.token_urlsafe(16)
            leaked.add(cc_seed)
            with rt.store() as store:
                integ = store.create_integration(unique_key="leak-cc", provider="oauth2-cc")
                conn, _ = store.upsert_connection(
                    integ,
                    connection_id="leak-cc-1",
                    credentials={
                        "type": "OAUTH2_CC",
                        "token": cc_seed,
                        "client_id": "leak-client",
                        "client_secret": client_secret,
                        "expires_at": iso(rt.clock.now()),
                    },
                    connection_config={"token_url": provider.token_url, "oauth_scopes": "a,b"},
                )
                cc_pk = conn.id
            cc = service.refresh(cc_pk, trigger="manual", force=True)
            assert cc.outcome == "success"
            leaked.add(cc.credentials["token"])

            creds = dict(ok.credentials)
            try:
                raise RuntimeError(f"provider answered {creds!r}")
            except RuntimeError:
                log.exception(f"bookkeeping failed for {creds!r}", credentials=creds)
                logging.getLogger("celery").exception("task failed: %r", creds)

            with rt.store() as store:
                # A provider the catalog no longer has (re-encrypted through the store: a raw
                # UPDATE of the column would now fail the row's integrity check instead).
                orphan_row = store.get_connection_by_pk(pks["orphan"])
                assert orphan_row is not None
                orphan_creds = store.credentials(orphan_row)
                orphan_row.provider = "no-such-provider"
                store.set_credentials(orphan_row, orphan_creds)
            orphan = service.refresh(pks["orphan"], trigger="manual", force=True)
            assert orphan.error is not None and orphan.error.error_code == "unknown_provider"

            service.http = exploding
            with pytest.raises(RuntimeError, match="transport exploded"):
                service.refresh(pks["crash"], trigger="manual", force=True)
        finally:
            rt.close()

    text = stream.getvalue()
    out, err = capfd.readouterr()
    lines = _lines(stream)
    outcomes = [line["outcome"] for line in lines if line["event"] == "token.refresh"]
    assert outcomes.count("success") == 2 and outcomes.count("failed") >= 5
    crash = [line for line in lines if line["event"] == "token.refresh.error"]
    assert crash and "transport exploded" in crash[0]["exception"]
    assert any(line["logger"] == "celery" for line in lines)
    assert REDACTED in text
    assert all(len(secret) >= 16 for secret in leaked)
    for secret in sorted(leaked):
        assert secret not in text, "secret in the log stream"
        assert secret not in out, "secret on stdout"
        assert secret not in err, "secret on stderr"


def _explode(request: httpx.Request) -> httpx.Response:
    """A transport bug whose message carries the whole request body (tokens and secret)."""
    raise RuntimeError(f"transport exploded: {request.content!r} {request.url}")


@pytest.mark.parametrize(
    "text",
    [
        "access_token=abc123",
        "ACCESS-TOKEN: abc123",
        "Authorization: Bearer abc.def",
        "basic dXNlcjpwYXNz",
        "api_key=k1",
        "pass\u017fword=hunter2",  # LATIN SMALL LETTER LONG S matches "s" case-insensitively
        "api_\u212aey=k1",  # KELVIN SIGN matches "k" case-insensitively
        "tok\u0435n=cyrillic-e",  # not a match: a lookalike that is a different letter
        "/connections/{connectionId}",
        "GET",
        "0123456789abcdef0123456789abcdef",
    ],
)
def test_marker_prefilter_changes_no_answer(text: str) -> None:
    """scrub_text's quick skip (no marker word in an ASCII string) redacts exactly what running
    every inline pattern on every string redacts, including letters that fold case-insensitively
    onto ASCII ones."""
    full = text
    for pattern in logs._INLINE_PATTERNS:
        full = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{logs.REDACTED}", full)
    assert logs.scrub_text(text) == full
