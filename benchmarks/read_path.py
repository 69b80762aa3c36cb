"""Benchmark 1: the hot read path, ``GET /connections/{id}``, against a baseline in the same server.

Both endpoints are served by one uvicorn process (:mod:`benchmarks.server`) on one PostgreSQL
schema holding ``connections`` rows with day-long tokens (so no read refreshes). For each
concurrency level and repetition both endpoints are loaded back to back, in alternating order, so
drift on this shared machine hits both alike; figures are medians over the repetitions, and the
headline ratio is the median of the per-repetition (paired) ratios.

The server's own ``api.request`` log lines give the server-side time per request, and an
in-process breakdown times each step of the read path on the same database, sequentially.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select, text, update

from benchmarks.common import (
    Context,
    autocommit_engine,
    log,
    median,
    parse_ts,
    proc_status_kb,
)
from benchmarks.data import INTEGRATION_KEY, create_integration, encrypt_credentials, insert_rows
from benchmarks.loadgen import run_load
from benchmarks.server import BASELINE_PREFIX, row_dict
from freshtoken.api.serialize import connection_full
from freshtoken.crypto import aad_for
from freshtoken.store.fetchstamps import FetchStamps
from freshtoken.store.models import Connection
from freshtoken.store.repository import fetch_for_read

FRESHTOKEN_ROUTE = "/connections/{connectionId}"
BASELINE_ROUTE = BASELINE_PREFIX + "{connection_id}"


@dataclass(frozen=True)
class ReadPathSizes:
    """How big and how long."""

    connections: int = 10_000
    concurrencies: tuple[int, ...] = (1, 8, 32)
    duration_s: float = 3.0
    repetitions: int = 5
    warmup_s: float = 3.0
    stage_iterations: int = 400


def bench_read_path(ctx: Context, sizes: ReadPathSizes, *, wrk: str | None) -> dict[str, Any]:
    """Run benchmark 1; returns every run, the medians, ratios, RSS and the step breakdown."""
    url = ctx.new_schema("bench_read")
    runtime = ctx.runtime(url)
    started = time.monotonic()
    integration_id = create_integration(runtime)
    insert_rows(runtime, first=1, last=sizes.connections, integration_id=integration_id, due=0)
    encrypt_credentials(runtime)
    vacuum = autocommit_engine(url)
    with vacuum.connect() as conn:
        conn.execute(text("VACUUM ANALYZE connections"))
    vacuum.dispose()
    log(f"read path: {sizes.connections} connections loaded in {time.monotonic() - started:.1f}s")

    proc, base = ctx.api("read-api", ctx.env(url), module="benchmarks.server")
    auth = f"Bearer {ctx.secret_key}"
    suffix = f"?provider_config_key={INTEGRATION_KEY}"
    endpoints: dict[str, dict[str, Any]] = {
        "freshtoken": {"prefix": "/connections/c", "auth": auth, "route": FRESHTOKEN_ROUTE},
        "baseline": {"prefix": BASELINE_PREFIX + "c", "auth": None, "route": BASELINE_ROUTE},
    }
    _sanity_check(base, endpoints, suffix, auth)
    rss_idle_kb = proc_status_kb(proc.pid, "VmRSS")

    def load(name: str, concurrency: int, duration: float, seed: int) -> Any:
        spec = endpoints[name]
        return run_load(
            base,
            prefix=spec["prefix"],
            suffix=suffix,
            ids=sizes.connections,
            concurrency=concurrency,
            duration=duration,
            auth=spec["auth"],
            wrk=wrk,
            seed=seed,
        )

    for name in endpoints:
        load(name, max(sizes.concurrencies), sizes.warmup_s, seed=99)
    rss_warm_kb = proc_status_kb(proc.pid, "VmRSS")

    runs: list[dict[str, Any]] = []
    seed = 0
    for rep in range(sizes.repetitions):
        for ci, concurrency in enumerate(sizes.concurrencies):
            order = list(endpoints) if (rep + ci) % 2 == 0 else list(reversed(endpoints))
            for name in order:
                seed += 1
                t0 = time.time()
                result = load(name, concurrency, sizes.duration_s, seed)
                t1 = time.time()
                runs.append(
                    {
                        "endpoint": name,
                        "rep": rep,
                        **result.as_dict(),
                        "window": (t0, t1),
                        "rss_kb": proc_status_kb(proc.pid, "VmRSS"),
                    }
                )
        log(f"read path: repetition {rep + 1}/{sizes.repetitions} done")
    rss_peak_kb = proc_status_kb(proc.pid, "VmHWM")
    rss_end_kb = proc_status_kb(proc.pid, "VmRSS")
    ctx.stop(proc)

    server_lines = proc.json_lines()
    _attach_server_times(runs, server_lines, endpoints)
    summary = _summarise(runs, sizes)
    stamps = _server_stamps(runtime, runs, server_lines)
    stages = stage_breakdown(runtime, sizes.connections, sizes.stage_iterations)
    profile = profile_requests(
        runtime, ctx.secret_key, sizes.connections, max(50, sizes.stage_iterations)
    )
    runtime.fetch_stamps.close()  # the profile's reads were stamped: write them before the drop
    ctx.drop_schema(url)
    return {
        "sizes": sizes.__dict__,
        "tool": runs[0]["tool"] if runs else None,
        "runs": [{k: v for k, v in r.items() if k != "window"} for r in runs],
        "summary": summary,
        "rss_kb": {
            "idle": rss_idle_kb,
            "after_warmup": rss_warm_kb,
            "end": rss_end_kb,
            "peak": rss_peak_kb,
            "per_run": [r["rss_kb"] for r in runs],
        },
        "stages": stages,
        "profile": profile,
        "server_stamps": stamps,
    }


def _sanity_check(base: str, endpoints: dict[str, dict[str, Any]], suffix: str, auth: str) -> None:
    import httpx

    with httpx.Client(base_url=base, timeout=10) as client:
        for name, spec in endpoints.items():
            headers = {"Authorization": spec["auth"]} if spec["auth"] else {}
            response = client.get(f"{spec['prefix']}1{suffix}", headers=headers)
            if response.status_code != 200 or response.json().get("connection_id") != "c1":
                raise RuntimeError(f"{name} endpoint answered {response.status_code}")
        # The freshtoken read serves the stored token without calling a provider.
        body = client.get(f"/connections/c2{suffix}", headers={"Authorization": auth}).json()
        if not body["credentials"].get("access_token", "").startswith("bench-at-"):
            raise RuntimeError("freshtoken read did not serve the stored credentials")


def _server_stamps(
    runtime: Any, runs: list[dict[str, Any]], lines: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the server's background flush wrote during the load (read before anything else in
    this benchmark stamps a row): rows with ``last_fetched_at`` set, and failed flushes logged."""
    with runtime.engine.connect() as conn:
        stamped = conn.execute(
            select(func.count())
            .select_from(Connection)
            .where(Connection.last_fetched_at.is_not(None))
        ).scalar_one()
    return {
        "rows_stamped": stamped,
        "freshtoken_requests": sum(r["requests"] for r in runs if r["endpoint"] == "freshtoken"),
        "flush_failed_lines": sum(
            1 for line in lines if line.get("event") == "store.fetch_stamps.flush_failed"
        ),
    }


def _attach_server_times(
    runs: list[dict[str, Any]], lines: list[dict[str, Any]], endpoints: dict[str, dict[str, Any]]
) -> None:
    """Median server-side duration (the api.request line) of each run's requests."""
    by_route: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        if line.get("event") != "api.request" or line.get("status") != 200:
            continue
        by_route.setdefault(str(line.get("route")), []).append(
            (parse_ts(line["timestamp"]), float(line["duration_ms"]))
        )
    for run in runs:
        t0, t1 = run["window"]
        route = endpoints[run["endpoint"]]["route"]
        durations = [d for ts, d in by_route.get(route, []) if t0 <= ts <= t1]
        run["server_ms_p50"] = median(durations)
        run["server_requests"] = len(durations)


def _summarise(runs: list[dict[str, Any]], sizes: ReadPathSizes) -> list[dict[str, Any]]:
    rows = []
    for concurrency in sizes.concurrencies:
        row: dict[str, Any] = {"concurrency": concurrency}
        for name in ("freshtoken", "baseline"):
            mine = [r for r in runs if r["endpoint"] == name and r["concurrency"] == concurrency]
            row[name] = {
                "rps": median(r["rps"] for r in mine),
                "p50_ms": median(r["p50_ms"] for r in mine),
                "p99_ms": median(r["p99_ms"] for r in mine),
                "server_ms_p50": median(r["server_ms_p50"] for r in mine),
                "errors": sum(r["errors"] for r in mine),
                "rps_runs": [round(r["rps"], 1) for r in mine],
            }
        # The ratio of each repetition's pair (the two endpoints loaded back to back): drift on a
        # shared machine moves both members of a pair alike, so the median of these paired ratios
        # is the headline figure; the ratio of the two medians is kept for reference.
        row["ratio_of_medians"] = row["freshtoken"]["rps"] / row["baseline"]["rps"]
        pairs = []
        for rep in range(sizes.repetitions):
            f = [
                r["rps"]
                for r in runs
                if r["endpoint"] == "freshtoken"
                and r["concurrency"] == concurrency
                and r["rep"] == rep
            ]
            b = [
                r["rps"]
                for r in runs
                if r["endpoint"] == "baseline"
                and r["concurrency"] == concurrency
                and r["rep"] == rep
            ]
            if f and b:
                pairs.append(f[0] / b[0])
        row["ratio_runs"] = [round(p, 3) for p in pairs]
        row["ratio"] = median(pairs)
        rows.append(row)
    return rows


# Step labels of the breakdown (the report looks some of them up by name).
STAGE_BASELINE = "baseline: SELECT + row to JSON (the baseline handler)"
STAGE_FETCH = "fetch_for_read: indexed SELECT in an ORM session + commit"
STAGE_RECORD = "clock.now() + FetchStamps.record (in memory)"
STAGE_DECRYPT = "decrypt credentials (AES-GCM + JSON)"
STAGE_POLICY = "refresh_for_read: policy check (token not due)"
STAGE_BODY = "connection_full + orjson (response body)"
STAGE_OLD = (
    "for comparison, no longer on the read path: the previous fetch_for_read "
    "(UPDATE … SET last_fetched_at … RETURNING + commit), run by the benchmark"
)
# Steps of the request itself (in the order the handler runs them), after the database step.
REQUEST_STEPS_AFTER_FETCH = (STAGE_RECORD, STAGE_DECRYPT, STAGE_POLICY, STAGE_BODY)
# Batch sizes of the background flush timed on its own, and how many flushes of each.
FLUSH_BATCHES = ((1, 40), (10, 40), (100, 20), (1000, 8))


def _previous_fetch_for_read(
    session: Any, provider_config_key: str, connection_id: str, now: dt.datetime
) -> Any:
    """The read path's lookup before FetchStamps (PostgreSQL form), kept only to compare with:
    stamp ``last_fetched_at`` in the read with ``UPDATE … RETURNING`` on the row picked by
    ``FOR UPDATE SKIP LOCKED``, falling back to a plain SELECT when the row is locked."""
    live = (
        Connection.provider_config_key == provider_config_key,
        Connection.connection_id == connection_id,
        Connection.deleted_at.is_(None),
    )
    target = select(Connection.id).where(*live).with_for_update(skip_locked=True).scalar_subquery()
    stamped = session.scalars(
        update(Connection)
        .where(Connection.id == target)
        .values(last_fetched_at=now)
        .returning(Connection)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if stamped is not None:
        return stamped
    return session.scalars(select(Connection).where(*live)).one_or_none()


def stage_breakdown(runtime: Any, connections: int, iterations: int) -> dict[str, Any]:
    """Time each step of the read path in-process, sequentially, on the same database (µs),
    then the background flush of read stamps at several batch sizes."""
    table = Connection.__table__
    baseline_stmt = select(table).where(
        table.c.provider_config_key == bindparam("pck"),
        table.c.connection_id == bindparam("cid"),
        table.c.deleted_at.is_(None),
    )
    rng = random.Random(7)
    ids = [f"c{rng.randint(1, connections)}" for _ in range(iterations)]
    timings: dict[str, list[float]] = {}
    # A FetchStamps of the benchmark's own: its thread (started by the first record) waits an
    # hour between flushes, so nothing is written behind the timings; flush() is timed below.
    stamps = FetchStamps(runtime.session_factory, interval=3600.0)

    def timed(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        value = fn()
        timings.setdefault(name, []).append((time.perf_counter() - t0) * 1e6)
        return value

    def baseline_select(cid: str) -> bytes:
        with runtime.engine.connect() as conn:
            row = conn.execute(baseline_stmt, {"pck": INTEGRATION_KEY, "cid": cid}).mappings().one()
        return orjson.dumps(row_dict(row), default=str)

    def fetch(cid: str) -> Any:  # as the handler does: the transaction ends with the block
        with runtime.store() as store:
            return fetch_for_read(store.session, INTEGRATION_KEY, cid)

    def previous_fetch(cid: str) -> Any:
        with runtime.store() as store:
            return _previous_fetch_for_read(
                store.session, INTEGRATION_KEY, cid, runtime.clock.now()
            )

    try:
        flush = _flush_costs(runtime, stamps)
        for _ in range(20):  # warm the pool and the statement caches
            baseline_select(ids[0])
            fetch(ids[0])
            previous_fetch(ids[0])
        for cid in ids:
            timed(STAGE_BASELINE, lambda c=cid: baseline_select(c))
            conn = timed(STAGE_FETCH, lambda c=cid: fetch(c))
            timed(STAGE_RECORD, lambda c=conn: stamps.record(c.id, runtime.clock.now()))
            creds = timed(
                STAGE_DECRYPT,
                lambda c=conn: runtime.cipher.decrypt_json(
                    c.credentials_enc, aad_for("connections", c.id, "credentials")
                ),
            )
            timed(
                STAGE_POLICY,
                lambda c=conn, k=creds: runtime.refresher.refresh_for_read(c, k, force=False),
            )
            timed(
                STAGE_BODY,
                lambda c=conn, k=creds: orjson.dumps(
                    connection_full(c, k, include_refresh_token=False)
                ),
            )
            timed(STAGE_OLD, lambda c=cid: previous_fetch(c))
    finally:
        stamps.close()  # also writes the stamps recorded above
    order = (STAGE_BASELINE, STAGE_FETCH, *REQUEST_STEPS_AFTER_FETCH, STAGE_OLD)
    return {
        "iterations": iterations,
        "median_us": {name: median(timings[name]) for name in order},
        "flush": flush,
    }


def _flush_costs(runtime: Any, stamps: FetchStamps) -> list[dict[str, Any]]:
    """``FetchStamps.flush()`` of N pending stamps (distinct rows), timed; µs per stamp = ÷ N.

    Every round stamps a later time than any stamp already in the table (one microsecond later
    per round, from the newest stamp or now, whichever is later), so each flush really updates
    its N rows (a stamp never moves backwards), and the reads timed afterwards still stamp later
    times. The last round of each size is checked in the table.
    """
    with runtime.engine.connect() as conn:
        pks = list(conn.execute(select(Connection.id).order_by(Connection.id)).scalars())
        newest = conn.execute(select(func.max(Connection.last_fetched_at))).scalar_one()
    rng = random.Random(11)
    base = runtime.clock.now() if newest is None else max(runtime.clock.now(), newest)
    round_no = 0
    results = []
    for batch, flushes in ((1, 5), *FLUSH_BATCHES):  # the first entry warms up
        durations = []
        for _ in range(flushes):
            round_no += 1
            when = base + dt.timedelta(microseconds=round_no)
            for pk in rng.sample(pks, min(batch, len(pks))):
                stamps.record(pk, when)
            t0 = time.perf_counter()
            written = stamps.flush()
            durations.append((time.perf_counter() - t0) * 1e6)
            if written != min(batch, len(pks)):
                raise RuntimeError(f"flush wrote {written} stamps, expected {batch}")
        with runtime.engine.connect() as conn:
            updated = conn.execute(
                select(func.count())
                .select_from(Connection)
                .where(Connection.last_fetched_at == when)
            ).scalar_one()
        if updated != min(batch, len(pks)):
            raise RuntimeError(f"flush of {batch} stamps updated {updated} rows")
        results.append(
            {
                "batch": min(batch, len(pks)),
                "flushes": flushes,
                "us_median": median(durations),
                "us_per_stamp": median(durations) / min(batch, len(pks)),
            }
        )
    return results[1:]


# -- in-process profile ---------------------------------------------------------------------------

# Functions whose cumulative time the profile reports (file suffix, function name, label).
PROFILE_FUNCTIONS = (
    ("fastapi/dependencies/utils.py", "solve_dependencies", "FastAPI: resolve and validate params"),
    ("freshtoken/api/deps.py", "authenticate", "bearer-key check"),
    ("freshtoken/api/deps.py", "reject_repeated_query", "repeated-query check"),
    ("freshtoken/api/deps.py", "reject_nul_in_query", "NUL-in-query check"),
    ("freshtoken/store/repository.py", "fetch_for_read", "fetch_for_read (indexed SELECT)"),
    ("freshtoken/store/fetchstamps.py", "record", "FetchStamps.record"),
    ("sqlalchemy/orm/session.py", "commit", "Session.commit"),
    ("sqlalchemy/engine/base.py", "execute", "Connection.execute (Core, baseline)"),
    ("freshtoken/crypto.py", "decrypt_json", "decrypt credentials"),
    ("freshtoken/refresh/service.py", "refresh_for_read", "refresh_for_read"),
    ("freshtoken/api/serialize.py", "connection_full", "connection_full"),
    ("logging/__init__.py", "handle", "logging: format and write log lines"),
)


def _asgi_get(app: Any, path: str, query: str, headers: list[tuple[bytes, bytes]]) -> Any:
    async def call() -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return call


def profile_requests(
    runtime: Any, secret_key: str, connections: int, requests: int
) -> dict[str, Any]:
    """Full requests in-process through the ASGI app, the sync handler run inline (not in a
    worker thread) so one profiler sees all of it: wall time per request without the profiler,
    then cProfile's cumulative time of the main steps, per request."""
    import asyncio
    import cProfile
    import pstats

    import anyio.to_thread

    from benchmarks.server import baseline_router
    from freshtoken.api.app import create_app

    app = create_app(runtime)
    app.include_router(baseline_router())
    rng = random.Random(5)
    auth = [(b"authorization", f"Bearer {secret_key}".encode())]
    query = f"provider_config_key={INTEGRATION_KEY}"
    ids = [rng.randint(1, connections) for _ in range(requests)]
    targets: dict[str, Any] = {
        "freshtoken": lambda i: _asgi_get(app, f"/connections/c{i}", query, auth),
        "baseline": lambda i: _asgi_get(app, f"{BASELINE_PREFIX}c{i}", query, []),
    }

    async def inline(func: Any, *args: Any, **_kwargs: Any) -> Any:
        return func(*args)

    original = anyio.to_thread.run_sync
    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    loop = asyncio.new_event_loop()
    wall: dict[str, list[float]] = {name: [] for name in targets}
    profiles: dict[str, Any] = {}
    try:
        for make in targets.values():  # warm-up, and a check that both answer
            for i in ids[:20]:
                if loop.run_until_complete(make(i)()) != 200:
                    raise RuntimeError("in-process request failed")
        for i in ids:
            for name, make in targets.items():
                t0 = time.perf_counter()
                loop.run_until_complete(make(i)())
                wall[name].append((time.perf_counter() - t0) * 1e6)
        for name, make in targets.items():
            profiler = cProfile.Profile()
            profiler.enable()
            for i in ids:
                loop.run_until_complete(make(i)())
            profiler.disable()
            profiles[name] = pstats.Stats(profiler)
    finally:
        anyio.to_thread.run_sync = original
        loop.close()
    steps: dict[str, dict[str, float]] = {}
    for name, stats in profiles.items():
        table = stats.stats
        total = sum(v[2] for v in table.values())  # total self time = the profiled time
        steps[name] = {"profiled total": total * 1e6 / requests}
        for suffix, function, label in PROFILE_FUNCTIONS:
            cum = sum(
                v[3]
                for (filename, _line, func), v in table.items()
                if func == function and filename.endswith(suffix)
            )
            if cum:
                steps[name][label] = cum * 1e6 / requests
    return {
        "requests": requests,
        "wall_us_median": {name: median(values) for name, values in wall.items()},
        "profile_us_per_request": steps,
    }
