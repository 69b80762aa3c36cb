"""Benchmark 1: the hot read path, ``GET /connections/{id}``, against the least the machine can do.

Two servers on one PostgreSQL schema, each its own process tree, started as a user starts them:

* **freshtoken**: ``freshtoken api --workers W`` (the CLI, unchanged), its schema made with
  ``freshtoken db upgrade`` and its connections imported through ``POST /connections``, tokens
  valid for a day (so no read refreshes);
* **baseline**: :mod:`benchmarks.baseline`, a raw ASGI app (no framework) on asyncpg under
  uvicorn with ``W`` workers, doing the same indexed SELECT of the same row and returning it as
  JSON.

For each worker count, concurrency level and repetition both endpoints are loaded back to back,
in alternating order, with a closed-loop load generator over random connections; the headline
ratio (freshtoken req/s ÷ baseline req/s) is the median of the per-repetition, paired ratios, so
drift on this shared machine hits both members of a pair alike. Only HTTP and the CLI are used,
so the benchmark measures whatever the code being benchmarked is.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from benchmarks.api_client import (
    INTEGRATION_KEY,
    connection_body,
    create_integration,
    import_connections,
)
from benchmarks.baseline import PREFIX as BASELINE_PREFIX
from benchmarks.common import (
    CLI,
    Context,
    free_port,
    http_ok,
    log,
    median,
    parse_ts,
    proc_status_kb,
    tree_rss_kb,
    wait_until,
)
from benchmarks.drivers import DriverSizes, bench_drivers
from benchmarks.loadgen import run_load

FRESHTOKEN_ROUTE = "/connections/{connectionId}"
ENDPOINTS = ("freshtoken", "baseline")


@dataclass(frozen=True)
class ReadPathSizes:
    """How big and how long."""

    connections: int = 2000
    concurrencies: tuple[int, ...] = (1, 8, 32)
    workers: tuple[int, ...] = (1, 2)
    duration_s: float = 2.0
    repetitions: int = 5
    warmup_s: float = 2.0
    drivers: DriverSizes = field(default_factory=DriverSizes)


def db_upgrade(env: dict[str, str]) -> None:
    """``freshtoken db upgrade`` on the schema ``env`` points at."""
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [*CLI, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"freshtoken db upgrade failed: {proc.stdout[-500:]}{proc.stderr[-2000:]}"
        )


def start_baseline(ctx: Context, name: str, database_url: str, workers: int) -> tuple[Any, str]:
    """:mod:`benchmarks.baseline` on a free port, on the schema of ``database_url``."""
    dsn, schema = libpq_dsn(database_url)
    port = free_port()
    env = {**ctx.env(database_url), "BENCH_BASELINE_DSN": dsn, "BENCH_BASELINE_SCHEMA": schema}
    argv = [sys.executable, "-m", "benchmarks.baseline", "--port", str(port)]
    proc = ctx.start(name, [*argv, "--workers", str(workers)], env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(url + "/health"), 60, f"{name} healthy", procs=[proc])
    return proc, url


def libpq_dsn(database_url: str) -> tuple[str, str]:
    """A SQLAlchemy URL of :meth:`Context.new_schema` → (libpq URL without options, schema)."""
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    parts = urlsplit(database_url)
    schema = parse_qs(parts.query)["options"][0].split("=", 1)[1]
    scheme = parts.scheme.split("+", 1)[0]
    return urlunsplit((scheme, parts.netloc, parts.path, "", "")), schema


def bench_read_path(ctx: Context, sizes: ReadPathSizes, *, wrk: str | None) -> dict[str, Any]:
    """Run benchmark 1 for every worker count; returns every run, medians and paired ratios."""
    url = ctx.new_schema("bench_read")
    env = ctx.env(url)
    db_upgrade(env)
    auth = f"Bearer {ctx.secret_key}"
    suffix = f"?provider_config_key={INTEGRATION_KEY}"
    prefixes = {"freshtoken": "/connections/c", "baseline": BASELINE_PREFIX + "c"}
    auths = {"freshtoken": auth, "baseline": None}
    runs: list[dict[str, Any]] = []
    memory: dict[int, dict[str, Any]] = {}
    server_lines: list[dict[str, Any]] = []
    imported = False
    for workers in sizes.workers:
        api, api_url = ctx.api(f"read-api-w{workers}", env, workers=workers)
        if not imported:
            started = time.monotonic()
            _import(ctx, api_url, sizes.connections)
            imported = True
            log(
                f"read path: {sizes.connections} connections imported in "
                f"{time.monotonic() - started:.1f}s through POST /connections"
            )
        baseline, baseline_url = start_baseline(ctx, f"read-baseline-w{workers}", url, workers)
        bases = {"freshtoken": api_url, "baseline": baseline_url}
        _sanity_check(bases, prefixes, suffix, auth)

        def load(name: str, concurrency: int, duration: float, seed: int) -> Any:
            return run_load(
                bases[name],  # noqa: B023 - used within this iteration only
                prefix=prefixes[name],
                suffix=suffix,
                ids=sizes.connections,
                concurrency=concurrency,
                duration=duration,
                auth=auths[name],
                wrk=wrk,
                seed=seed,
            )

        rss_idle = tree_rss_kb(api.pid)
        for name in ENDPOINTS:
            load(name, max(sizes.concurrencies), sizes.warmup_s, seed=99)
        rss_warm = tree_rss_kb(api.pid)
        seed = 0
        for rep in range(sizes.repetitions):
            for ci, concurrency in enumerate(sizes.concurrencies):
                order = ENDPOINTS if (rep + ci) % 2 == 0 else ENDPOINTS[::-1]
                for name in order:
                    seed += 1
                    t0 = time.time()
                    result = load(name, concurrency, sizes.duration_s, seed)
                    runs.append(
                        {
                            "endpoint": name,
                            "workers": workers,
                            "rep": rep,
                            **result.as_dict(),
                            "window": (t0, time.time()),
                        }
                    )
            log(f"read path (workers {workers}): repetition {rep + 1}/{sizes.repetitions} done")
        memory[workers] = {
            "idle_kb": rss_idle,
            "after_warmup_kb": rss_warm,
            "end_kb": tree_rss_kb(api.pid),
            "leader_peak_kb": proc_status_kb(api.pid, "VmHWM"),
            "baseline_end_kb": tree_rss_kb(baseline.pid),
        }
        ctx.stop(baseline)
        ctx.stop(api)
        server_lines.extend(api.json_lines())
    _attach_server_times(runs, server_lines)
    dsn, schema = libpq_dsn(url)
    ids = [f"c{i}" for i in range(1, sizes.connections + 1)]
    drivers = bench_drivers(dsn, schema, INTEGRATION_KEY, ids, sizes.drivers)
    ctx.drop_schema(url)
    return {
        "drivers": drivers,
        "sizes": asdict(sizes),
        "tool": runs[0]["tool"] if runs else None,
        "runs": [{k: v for k, v in r.items() if k != "window"} for r in runs],
        "summary": summarise(runs, sizes),
        "memory": {str(k): v for k, v in memory.items()},
    }


def _import(ctx: Context, api_url: str, count: int) -> None:
    create_integration(api_url, ctx.secret_key)
    expires = time.time() + 86_400
    bodies = [
        connection_body(
            f"c{i}",
            access_token=f"bench-at-{i:08d}-" + "a" * 24,
            refresh_token=f"bench-rt-{i:08d}-" + "r" * 24,
            expires_at=expires + i,
            token_url=None,
        )
        for i in range(1, count + 1)
    ]
    import_connections(api_url, ctx.secret_key, bodies)


def _sanity_check(bases: dict[str, str], prefixes: dict[str, str], suffix: str, auth: str) -> None:
    """Both endpoints answer 200 with the same row; freshtoken serves the stored token."""
    for name, base in bases.items():
        headers = {"Authorization": auth} if name == "freshtoken" else {}
        response = httpx.get(f"{base}{prefixes[name]}2{suffix}", headers=headers, timeout=10)
        if response.status_code != 200 or response.json().get("connection_id") != "c2":
            raise RuntimeError(f"{name} endpoint answered {response.status_code}")
        if name == "freshtoken":
            token = response.json()["credentials"].get("access_token", "")
            if not token.startswith("bench-at-00000002-"):
                raise RuntimeError("freshtoken read did not serve the stored credentials")


def _attach_server_times(runs: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    """Median server-side duration of freshtoken's requests in each run (``api.request`` lines
    of the read route, when the server logs them; the baseline logs nothing)."""
    stamped: list[tuple[float, float]] = []
    for line in lines:
        if (
            line.get("event") == "api.request"
            and line.get("status") == 200
            and line.get("route") == FRESHTOKEN_ROUTE
            and "duration_ms" in line
        ):
            stamped.append((parse_ts(line["timestamp"]), float(line["duration_ms"])))
    for run in runs:
        if run["endpoint"] != "freshtoken":
            continue
        t0, t1 = run["window"]
        durations = [d for ts, d in stamped if t0 <= ts <= t1]
        run["server_ms_p50"] = median(durations) if durations else None


def summarise(runs: list[dict[str, Any]], sizes: ReadPathSizes) -> list[dict[str, Any]]:
    """One row per (workers, concurrency): medians per endpoint and the paired ratio."""
    rows = []
    for workers in sizes.workers:
        for concurrency in sizes.concurrencies:
            mine = [r for r in runs if r["workers"] == workers and r["concurrency"] == concurrency]
            row: dict[str, Any] = {"workers": workers, "concurrency": concurrency}
            for name in ENDPOINTS:
                own = [r for r in mine if r["endpoint"] == name]
                row[name] = {
                    "rps": median(r["rps"] for r in own),
                    "p50_ms": median(r["p50_ms"] for r in own),
                    "p99_ms": median(r["p99_ms"] for r in own),
                    "errors": sum(r["errors"] for r in own),
                    "rps_runs": [round(r["rps"], 1) for r in own],
                }
            server = [r["server_ms_p50"] for r in mine if r.get("server_ms_p50") is not None]
            row["freshtoken"]["server_ms_p50"] = median(server) if server else None
            pairs = []
            for rep in range(sizes.repetitions):
                f = [r["rps"] for r in mine if r["endpoint"] == "freshtoken" and r["rep"] == rep]
                b = [r["rps"] for r in mine if r["endpoint"] == "baseline" and r["rep"] == rep]
                if f and b and b[0] > 0:
                    pairs.append(f[0] / b[0])
            row["ratio_runs"] = [round(p, 3) for p in pairs]
            row["ratio"] = median(pairs)
            baseline_rps = row["baseline"]["rps"]
            row["ratio_of_medians"] = (
                row["freshtoken"]["rps"] / baseline_rps if baseline_rps else None
            )
            rows.append(row)
    return rows
