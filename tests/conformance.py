"""Property-based conformance of the API to its own ``/openapi.json`` (schemathesis): the harness.

:func:`check_conformance` runs schemathesis' engine (what ``schemathesis run`` drives: examples,
coverage and fuzzing phases, positive and negative data) in-process against the ASGI app over a
runtime :func:`seeded_runtime` built. Two slow tests call it: on SQLite
(tests/unit/api/test_schemathesis.py) and on PostgreSQL
(tests/integration/test_schemathesis_postgres.py). The seed is fixed, the example database off
and response-derived inputs off, so a run is reproducible. (schemathesis' pytest loader
``from_fixture`` does not work with pytest 9, hence the engine.)

Set-up:

* A migrated runtime with the refresh engine, as ``freshtoken api`` builds it (without one the
  refresh route answers 503 ``refresh_unavailable``), against the HTTP mock provider (rotation
  off, so the seed can be restored without replaying a spent token). Seeded: integration
  ``oauth2-test`` with two mock-backed OAUTH2 connections and ``apikey-test`` with an API_KEY
  one. Schemathesis dictionaries feed those keys and ids into generated path, query and body
  values, so every operation is reached with a success, which the test asserts.
* Authentication is configured through schemathesis (``auth.openapi.bearerAuth``, the scheme the
  document declares), so its auth-aware checks know the credentials are explicit: ``ignored_auth``
  re-sends successful requests without and with a wrong key and expects 401.
* Checks: every built-in response check (``not_a_server_error``, ``status_code_conformance``,
  ``content_type_conformance``, ``response_schema_conformance``, ``response_headers_conformance``,
  ``negative_data_rejection``, ``positive_data_acceptance``, ``missing_required_header``,
  ``ignored_auth``, ``unsupported_method``, ``allow_header_conformance``) plus
  :func:`business_rule_400_only`. The stateful phase and its checks are off.
* Strings never contain NUL (``allow-x00 = false``): the API refuses NUL anywhere in a body or
  query string with 400 (PostgreSQL can store it in neither ``text`` nor ``jsonb``; it used to
  surface as 503 ``database_unavailable``), which test_hostile_inputs checks directly.

Nango's contract rejects some schema-valid requests with 400 (an unknown ``provider_config_key``
on a read is ``unknown_provider_config``; ``credentials.type`` not matching the provider's
auth_mode is ``invalid_body``; a duplicate integration key is ``invalid_body``; a forced refresh of
credentials that cannot be refreshed is ``not_refreshable``). Those operations document 400 (the
test checks it), ``status_code_conformance`` stays on for them, and ``positive_data_acceptance``
accepts 400 there only; :func:`business_rule_400_only` then requires every 400 answering a
schema-valid request to be one of the rules listed in ``BUSINESS_400`` for its operation, with the
field it names, so a validation bug cannot hide behind the allowance.

One exclusion: ``unsupported_method`` is off for ``POST /connections/{connectionId}/refresh``. A
connection id may contain ``/`` (Nango's pattern allows it, and servers decode ``%2F`` before
routing), so ``PATCH /connections/c1/refresh`` is, correctly, a PATCH of connection ``c1/refresh``
and cannot be a 405.

"Rejected requests change nothing": the app is served through :class:`RowGuard`, an ASGI wrapper
that snapshots every stored row before and after each request, schemathesis' own probes included.
Any response of 400 or more after which the rows differ is a violation: the check is per request,
not a before/after comparison of the whole run (which successful writes would blur). The
``last_fetched_at`` stamps reads leave for a background flush are written around each request
instead, so every write is attributed to the request that caused it. A successful write is then
rolled back to the seed, so every request starts from the same rows. The wrapper
also requires every error body, including the 404/405 answers to undocumented paths and methods
that no schema check covers, to be the envelope and to carry no traceback text.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import orjson
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import StopReason, events
from sqlalchemy import Engine, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from freshtoken import migrate
from freshtoken.api.app import create_app
from freshtoken.clock import FakeClock
from freshtoken.db.base import Base
from freshtoken.mockprovider import MockProvider, MockProviderConfig
from freshtoken.runtime import Runtime, build_runtime
from freshtoken.settings import Settings
from freshtoken.store.fetchstamps import FetchStamps
from tests.support import SECRET_KEY, add_oauth2_connection

SEED = 20240611
# Fuzzing-phase examples per operation (the examples and coverage phases add their own), and a
# floor on the requests sent, so a generation regression cannot pass quietly. PostgreSQL gets
# fewer: its run looks for what only that database refuses, and keeps the module under 3 min.
MAX_EXAMPLES = {"sqlite": 200, "postgresql": 100}
MIN_REQUESTS = {"sqlite": 5000, "postgresql": 3500}  # 6,444 and 4,144 sent today

INTEGRATION_KEYS = ["oauth2-test", "apikey-test"]
CONNECTION_IDS = ["conn-1", "conn-2", "key-1"]
PROVIDERS = ["oauth2", "api-key", "github", "google"]

Rule = tuple[str, tuple[str | int, ...]]  # (error.code, errors[].path)

# Schema-valid requests Nango's contract answers 400, by operation: (error code, field path).
BUSINESS_400: dict[str, set[Rule]] = {
    "GET /connections/{connectionId}": {("unknown_provider_config", ())},
    "GET /connection/{connectionId}": {("unknown_provider_config", ())},
    "POST /connections/{connectionId}/refresh": {
        ("unknown_provider_config", ()),
        ("not_refreshable", ()),
    },
    "POST /connections": {("invalid_body", ("credentials", "type"))},
    "POST /connection": {("invalid_body", ("credentials", "type"))},
    "POST /integrations": {
        ("invalid_body", ("credentials", "type")),
        ("invalid_body", ("unique_key",)),
    },
    "PATCH /integrations/{uniqueKey}": {
        ("invalid_body", ("credentials", "type")),
        ("invalid_body", ("unique_key",)),
    },
    "POST /connect/sessions": {("invalid_body", ("allowed_integrations",))},
    "POST /connect/sessions/reconnect": {("invalid_body", ("connection_id",))},
}

_POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # the default
_NO_RESPONSE_DATA = {"extra-data-sources": {"responses": False}}

CONFIG: dict[str, Any] = {
    "seed": SEED,
    "generation": {
        "mode": "all",
        # The API refuses NUL (U+0000) in every string, body or query, with 400: PostgreSQL can
        # store it in neither text nor jsonb. test_hostile_inputs checks that rule directly.
        "allow-x00": False,
        "database": "none",
        "deterministic": True,
    },
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True, **_NO_RESPONSE_DATA},
        "fuzzing": {"enabled": True, **_NO_RESPONSE_DATA},
        "stateful": {"enabled": False},
    },
    "checks": {
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        "negative_data_rejection": {"enabled": True},
        "positive_data_acceptance": {"enabled": True},
        "missing_required_header": {"enabled": True},
        "ignored_auth": {"enabled": True},
        "unsupported_method": {"enabled": True},
        "allow_header_conformance": {"enabled": True},
    },
    "dictionaries": {
        "integration_keys": {"values": INTEGRATION_KEYS},
        "connection_ids": {"values": CONNECTION_IDS},
        "providers": {"values": PROVIDERS},
    },
    "parameters": {
        "query.provider_config_key": {"dictionary": "integration_keys", "probability": 0.7},
        "body.provider_config_key": {"dictionary": "integration_keys", "probability": 0.7},
        "path.uniqueKey": {"dictionary": "integration_keys", "probability": 0.5},
        "path.connectionId": {"dictionary": "connection_ids", "probability": 0.7},
        "body.connection_id": {"dictionary": "connection_ids", "probability": 0.5},
        "body.integration_id": {"dictionary": "integration_keys", "probability": 0.7},
        "path.provider": {"dictionary": "providers", "probability": 0.5},
    },
    "operations": [
        {
            "include-name": sorted(BUSINESS_400),
            "checks": {
                "positive_data_acceptance": {"expected-statuses": [*_POSITIVE_STATUSES, "400"]}
            },
        },
        {
            "include-name": "POST /connections/{connectionId}/refresh",
            "checks": {"unsupported_method": {"enabled": False}},
        },
        {
            # ``tags`` is a deepObject of strings: on the wire a generated ``null``, ``false`` or
            # ``0`` value is the string "null", "false" or "0", a valid tag value, so
            # "schema-violating" tag objects are indistinguishable from valid ones and the check
            # flakes with the generator's seed. test_connections_list.py checks the list's
            # refusals by hand (unknown parameters, limits, empty/long/nested tag keys).
            "include-name": ["GET /connection", "GET /connections"],
            "checks": {"negative_data_rejection": {"enabled": False}},
        },
    ],
}


@schemathesis.check
def business_rule_400_only(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """A 400 answering a schema-valid request must be one of its operation's BUSINESS_400 rules."""
    del ctx  # part of the check signature
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    error = orjson.loads(response.content)["error"]
    paths = [tuple(item.get("path", ())) for item in error.get("errors") or ()] or [()]
    allowed = BUSINESS_400.get(case.operation.label, set())
    for path in paths:
        if (error["code"], path) not in allowed:
            raise AssertionError(
                f"A schema-valid request was rejected: 400 {error['code']} at {list(path)}, "
                "which is not a business rule of this operation"
            )
    return None


Rows = dict[str, list[dict[str, Any]]]


def stored_rows(engine: Engine) -> Rows:
    """Every row of every table, typed (so the same rows can be inserted back on any database)."""
    with engine.connect() as conn:
        return {
            name: [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c.id))]
            for name, table in Base.metadata.tables.items()
        }


def envelope_problem(body: bytes) -> str | None:
    """Why ``body`` is not a clean error envelope, or None when it is one."""
    if b"Traceback" in body or b'File "' in body:
        return "traceback text in the body"
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "the body is not JSON"
    if not isinstance(parsed, dict) or set(parsed) != {"error"}:
        return "the body is not {'error': ...}"
    error = parsed["error"]
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return "error.code is missing"
    if not set(error) <= {"code", "message", "payload", "errors"}:
        return f"unexpected error keys {sorted(error)}"
    return None


class RowGuard:
    """ASGI wrapper: rows unchanged by every error response, error bodies enveloped, seed kept.

    ``statuses`` counts responses by (method, route template, status) for the coverage assertions.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.engine = runtime.engine
        # Reads stamp last_fetched_at behind the response, from a thread flushing once a second;
        # that write would land in whichever request runs next. The thread is parked and the
        # stamps are written around each request instead, so every write is that request's own.
        runtime.fetch_stamps.close()
        runtime.fetch_stamps = FetchStamps(runtime.session_factory, interval=24 * 3600)
        self.seed_rows = self.snapshot()
        self.violations: list[str] = []
        self.statuses: collections.Counter[tuple[str, str, int]] = collections.Counter()

    def snapshot(self) -> Rows:
        """Every stored row."""
        return stored_rows(self.engine)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request between two snapshots."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.runtime.fetch_stamps.flush()
        before = self.snapshot()
        status = 0
        body = bytearray()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, recording_send)
        self.runtime.fetch_stamps.flush()
        after = self.snapshot()
        route = getattr(scope.get("route"), "path_format", None) or "<no route>"
        self.statuses[(scope["method"], route, status)] += 1
        where = f"{scope['method']} {scope['path']} (route {route}) -> {status}"
        if status >= 400:
            if after != before:
                self.violations.append(f"{where}: stored rows changed")
            problem = envelope_problem(bytes(body))
            if problem is not None:
                self.violations.append(f"{where}: {problem}")
        if after != self.seed_rows:
            self.restore_seed()

    def restore_seed(self) -> None:
        """Put the seeded rows back after a successful write (ids and ciphertexts included)."""
        tables = Base.metadata.sorted_tables  # parents first
        with self.engine.begin() as conn:
            for table in reversed(tables):
                conn.execute(table.delete())
            for table in tables:
                if self.seed_rows[table.name]:
                    conn.execute(table.insert(), self.seed_rows[table.name])


MOCK_PROVIDER_CONFIG = MockProviderConfig(rotate_refresh_tokens=False, reuse_detection=False)


@contextlib.contextmanager
def seeded_runtime(
    settings: Settings, clock: FakeClock, provider: MockProvider
) -> Iterator[Runtime]:
    """A migrated runtime with the refresh engine (as ``freshtoken api`` builds it), seeded: two
    OAUTH2 connections on ``provider`` (configured with :data:`MOCK_PROVIDER_CONFIG`: rotation
    off, so restoring the seed never replays a spent token) and one API_KEY connection."""
    runtime = build_runtime(settings, clock=clock)
    try:
        migrate.upgrade(runtime.engine)
        for connection_id in ("conn-1", "conn-2"):
            add_oauth2_connection(
                runtime, provider, connection_id=connection_id, integration_key="oauth2-test"
            )
        with runtime.store() as store:
            integration = store.create_integration(unique_key="apikey-test", provider="api-key")
            store.upsert_connection(
                integration,
                connection_id="key-1",
                credentials={"type": "API_KEY", "apiKey": "k-secret-1"},
                metadata={"team": "a"},
                tags={"env": "test"},
            )
        yield runtime
    finally:
        runtime.close()


def _failure_report(event: events.ScenarioFinished) -> list[str]:
    lines = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            info = check.failure_info
            if info is None:
                continue
            interaction = event.recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            body = response.content[:400].decode("utf-8", "replace") if response else ""
            lines.append(
                f"{event.recorder.label} [{check.name}] {info.failure.title}: "
                f"{info.failure.message}\n    {info.code_sample}\n    -> {body}"
            )
    return lines


def check_conformance(runtime: Runtime, database: str) -> None:
    """Run schemathesis against the app over ``runtime`` (seeded by :func:`seeded_runtime`) and
    fail on any check failure, any RowGuard violation, a seed not restored, fewer requests than
    ``MIN_REQUESTS[database]`` or a documented operation never answered with a success."""
    guard = RowGuard(create_app(runtime), runtime)
    # Authentication through schemathesis, on the security scheme the document declares.
    generation = {**CONFIG["generation"], "max-examples": MAX_EXAMPLES[database]}
    config = {
        **CONFIG,
        "auth": {"openapi": {"bearerAuth": {"bearer": SECRET_KEY}}},
        "generation": generation,
        # The import body is a union of 11 credential types (issue #12) and only the seeded
        # integrations' two types can succeed, so the imports get more examples to be reached
        # with a success (asserted below) as surely as before.
        "operations": [
            *CONFIG["operations"],
            {
                "include-name": ["POST /connection", "POST /connections"],
                "generation": {**generation, "max-examples": 3 * MAX_EXAMPLES[database]},
            },
        ],
    }
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", guard, config=SchemathesisConfig.from_dict(config)
    )
    document = schema.raw_schema
    for label in BUSINESS_400:
        method, path = label.split(" ", 1)
        assert "400" in document["paths"][path][method.lower()]["responses"], label

    failures: list[str] = []
    finished: events.EngineFinished | None = None
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            failures.extend(_failure_report(event))
        elif isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: engine error {event.value!r}")
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal engine error {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            finished = event

    assert finished is not None and finished.stop_reason == StopReason.COMPLETED
    assert not failures, "\n".join(dict.fromkeys(failures))  # one line per distinct failure
    assert not guard.violations, "\n".join(dict.fromkeys(guard.violations))
    assert guard.snapshot() == guard.seed_rows
    assert sum(guard.statuses.values()) >= MIN_REQUESTS[database]
    # Every documented operation was reached with a success at least once.
    succeeded = {(m, route) for (m, route, status) in guard.statuses if 200 <= status < 300}
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "patch", "delete", "put"}
    }
    assert documented <= succeeded, sorted(documented - succeeded)
