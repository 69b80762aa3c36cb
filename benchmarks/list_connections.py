"""Benchmark: ``GET /connections?limit=100`` at 10,000 vs 1,000,000 connections.

The list pages in SQL over ``ix_connections_live_list`` (store/connection_list.py), so a page
should cost about the same whatever the table size, and the API's memory should not grow with
it. For each size: one PostgreSQL schema, rows bulk-inserted with ``INSERT ... SELECT
generate_series`` (distinct creation times, an end user and tags on every row, ciphertext-sized
``credentials_enc``) and ``VACUUM ANALYZE``d; one ``freshtoken api`` process per size. Requests
alternate between the sizes (so drift on the shared machine hits both) and are timed end to
end; the API's peak RSS (``VmHWM``) is read after its requests.

Run alone: ``python -m benchmarks.list_connections [--sizes 10000,1000000] [--requests 200]``;
``python -m benchmarks.run --only list_connections`` runs it with the other sections.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from benchmarks.common import Context, autocommit_engine, log, percentile, proc_status_kb
from benchmarks.data import create_integration


@dataclass(frozen=True)
class ListSizes:
    """Table sizes, timed requests per size and per query, and untimed warm-up requests."""

    table_sizes: tuple[int, ...] = (10_000, 1_000_000)
    requests: int = 200
    warmup: int = 20


FULL_SIZES = ListSizes()
QUICK_SIZES = ListSizes(table_sizes=(1_000, 10_000), requests=30, warmup=5)

# What is timed: the unfiltered first page (the figure) and two filtered pages.
QUERIES = {
    "limit=100": "/connections?limit=100",
    "limit=100&page=5": "/connections?limit=100&page=5",
    "limit=100&integrationId": "/connections?limit=100&integrationId=bench",
}

_INSERT = (
    "INSERT INTO connections (connection_id, provider_config_key, provider, integration_id, "
    "credentials_type, credentials_enc, has_refresh_token, connection_config, tags, end_user, "
    "refresh_exhausted, needs_reauth, version, created_at, updated_at) "
    "SELECT 'c' || g, :key, 'oauth2', :iid, 'OAUTH2', repeat('x', 600), true, '{}', "
    "jsonb_build_object('env', CASE WHEN g % 2 = 0 THEN 'prod' ELSE 'dev' END), "
    "jsonb_build_object('id', 'u' || (g % 1000), 'email', 'u' || g || '@example.com'), "
    "false, false, 1, t.now - (g || ' seconds')::interval, t.now "
    "FROM generate_series(1, CAST(:rows AS integer)) AS g, "
    "(SELECT timezone('utc', now()) AS now) AS t"
)


def _load(ctx: Context, size: int) -> tuple[str, float]:
    """A schema with ``size`` connections; returns its URL and the insert time."""
    url = ctx.new_schema("bench_list")
    runtime = ctx.runtime(url, redis=False)
    integration_id = create_integration(runtime, key="bench")
    started = time.monotonic()
    with runtime.engine.begin() as conn:
        conn.execute(text(_INSERT), {"key": "bench", "iid": integration_id, "rows": size})
    insert_s = time.monotonic() - started
    maintenance = autocommit_engine(url)
    with maintenance.connect() as conn:
        conn.execute(text("VACUUM ANALYZE connections"))
    maintenance.dispose()
    log(f"list_connections: {size} rows loaded in {insert_s:.1f}s")
    return url, insert_s


def _get(base: str, path: str, secret_key: str) -> tuple[float, int]:
    """One timed GET; returns (milliseconds, connections in the page)."""
    request = urllib.request.Request(  # noqa: S310 - local URL
        base + path, headers={"Authorization": f"Bearer {secret_key}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, len(json.loads(body)["connections"])


def bench_list_connections(ctx: Context, sizes: ListSizes) -> dict[str, Any]:
    """Load every size, start one API per size, time the list pages alternately."""
    tables: list[dict[str, Any]] = []
    for size in sizes.table_sizes:
        url, insert_s = _load(ctx, size)
        proc, base = ctx.api(f"api-list-{size}", ctx.env(url))
        rss_idle = proc_status_kb(proc.pid, "VmRSS")
        tables.append(
            {
                "size": size,
                "base": base,
                "proc": proc,
                "insert_s": insert_s,
                "rss_idle_kb": rss_idle,
                "ms": {q: [] for q in QUERIES},
                "rows": {},
            }
        )
    for table in tables:
        for _ in range(sizes.warmup):
            _get(table["base"], QUERIES["limit=100"], ctx.secret_key)
    for _ in range(sizes.requests):
        for name, path in QUERIES.items():
            for table in tables:  # alternate sizes: drift hits both
                ms, count = _get(table["base"], path, ctx.secret_key)
                table["ms"][name].append(ms)
                table["rows"][name] = count
    results: list[dict[str, Any]] = []
    for table in tables:
        entry = {
            "rows": table["size"],
            "insert_s": round(table["insert_s"], 1),
            "rss_idle_mb": (table["rss_idle_kb"] or 0) / 1024,
            "rss_peak_mb": (proc_status_kb(table["proc"].pid, "VmHWM") or 0) / 1024,
            "queries": {
                name: {
                    "p50_ms": percentile(ms, 50),
                    "p95_ms": percentile(ms, 95),
                    "page_rows": table["rows"][name],
                    "requests": len(ms),
                }
                for name, ms in table["ms"].items()
            },
        }
        results.append(entry)
        ctx.stop(table["proc"])
        log(
            f"list_connections: {table['size']} rows: p50 "
            f"{entry['queries']['limit=100']['p50_ms']:.1f} ms, "
            f"API peak RSS {entry['rss_peak_mb']:.0f} MB"
        )
    first, last = results[0], results[-1]
    return {
        "sizes": sizes.__dict__,
        "results": results,
        "p50_ratio_largest_vs_smallest": (
            last["queries"]["limit=100"]["p50_ms"] / first["queries"]["limit=100"]["p50_ms"]
        ),
        "rss_ratio_largest_vs_smallest": last["rss_peak_mb"] / first["rss_peak_mb"],
    }


def render_markdown(result: dict[str, Any]) -> str:
    """A markdown table of the figures (for docs/benchmarks.md)."""
    lines = [
        "| rows | query | p50 ms | p95 ms | rows in page | API peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for entry in result["results"]:
        for name, q in entry["queries"].items():
            lines.append(
                f"| {entry['rows']:,} | `GET /connections?{name}` | {q['p50_ms']:.1f} | "
                f"{q['p95_ms']:.1f} | {q['page_rows']} | {entry['rss_peak_mb']:.0f} |"
            )
    lines.append("")
    lines.append(
        f"p50 ratio (largest / smallest, `limit=100`): "
        f"{result['p50_ratio_largest_vs_smallest']:.2f}; "
        f"API peak RSS ratio: {result['rss_ratio_largest_vs_smallest']:.2f}"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark alone and print the markdown table (JSON with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.list_connections")
    parser.add_argument("--sizes", default=",".join(str(s) for s in FULL_SIZES.table_sizes))
    parser.add_argument("--requests", type=int, default=FULL_SIZES.requests)
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args(argv)
    sizes = ListSizes(
        table_sizes=tuple(int(s) for s in args.sizes.split(",") if s), requests=args.requests
    )
    ctx = Context.create()
    try:
        result = bench_list_connections(ctx, sizes)
    finally:
        ctx.close()
    sys.stdout.write(json.dumps(result, indent=1) if args.json else render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
