# ruff: noqa: S603 - starts local tools and freshtoken processes with fixed argv
"""Benchmark 2 (scan cost) and the scanner half of benchmark 5 (memory).

One PostgreSQL schema per table size (10k, 100k, 1M rows), each with the same number of rows due,
loaded with ``INSERT ... SELECT generate_series`` and ``VACUUM ANALYZE``d. At each size:

* the PostgreSQL plan of ``due_rows_statement`` (``EXPLAIN (ANALYZE, BUFFERS)``, rolled back), and
* several worker-like child processes (:mod:`benchmarks.scan_child`, run round-robin over the
  sizes, side by side) each run the real ``RefreshScanner(...).scan()`` (select + claim update,
  no-op enqueue) several times and report the scan times and their own peak RSS (``VmHWM``
  from ``/proc/self/status``: on Linux ``ru_maxrss`` of a spawned child starts from the parent's
  high-water mark before ``exec``, so ``getrusage``/``wait4`` would report the benchmark
  driver's size, not the scanner's).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from benchmarks.common import REPO_ROOT, Context, autocommit_engine, log, median
from benchmarks.data import create_integration, insert_rows
from benchmarks.scan_child import RESET_SQL
from freshtoken.store.schedule import due_rows_statement


@dataclass(frozen=True)
class ScanSizes:
    """Table sizes, rows due, and how many scans."""

    table_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    due: int = 500
    children: int = 3
    scans_per_child: int = 5


def bench_scan(ctx: Context, sizes: ScanSizes) -> dict[str, Any]:
    """Run benchmark 2 and the scanner memory measurements at every table size."""
    tables: list[dict[str, Any]] = []
    for size in sizes.table_sizes:
        url = ctx.new_schema("bench_scan")
        runtime = ctx.runtime(url)
        integration_id = create_integration(runtime)
        started = time.monotonic()
        insert_rows(runtime, first=1, last=size, integration_id=integration_id, due=sizes.due)
        insert_s = time.monotonic() - started
        maintenance = autocommit_engine(url)
        with maintenance.connect() as conn:
            conn.execute(text("VACUUM ANALYZE connections"))
            table_mb = conn.execute(
                text("SELECT pg_total_relation_size('connections') / 1048576.0")
            ).scalar_one()
        maintenance.dispose()
        with runtime.engine.begin() as conn:
            conn.execute(text(RESET_SQL), {"due": sizes.due})
        log(f"scan: {size} rows loaded ({insert_s:.1f}s insert, {table_mb:.0f} MB with indexes)")
        tables.append(
            {
                "size": size,
                "url": url,
                "runtime": runtime,
                "insert_s": insert_s,
                "table_mb": float(table_mb),
                "plan": explain_scan(runtime, sizes.due),
                "children": [],
            }
        )
    # Side by side: round-robin over the sizes, so drift on the shared machine hits every size.
    for round_no in range(sizes.children):
        for table in tables:
            log_path = ctx.workdir / f"scan-child-{table['size']}-{round_no}.log"
            table["children"].append(_run_child(ctx.env(table["url"]), sizes, log_path))
    results: list[dict[str, Any]] = []
    for table in tables:
        children = table["children"]
        times = [t for c in children for t in c["scan_ms"]]
        results.append(
            {
                "rows": table["size"],
                "due": sizes.due,
                "insert_s": round(table["insert_s"], 1),
                "table_mb": table["table_mb"],
                "scan_ms_median": median(times),
                "scan_ms_min": min(times),
                "scan_ms_max": max(times),
                "scans": len(times),
                "claimed": sorted({c for ch in children for c in ch["claimed"]}),
                "pages": sorted({p for ch in children for p in ch["pages"]}),
                "plan": table["plan"],
                "statement_ms_per_scan": {
                    key: median(c["statement_ms_per_scan"].get(key, 0.0) for c in children)
                    for key in sorted({k for c in children for k in c["statement_ms_per_scan"]})
                },
                "rss_setup_kb_median": median(c["rss_setup_kb"] for c in children),
                "rss_peak_kb_median": median(c["vm_hwm_kb"] for c in children),
                "rss_peak_kb_max": max(c["vm_hwm_kb"] for c in children),
            }
        )
        log(
            f"scan: {table['size']} rows: median {results[-1]['scan_ms_median']:.1f} ms per scan, "
            f"peak RSS {results[-1]['rss_peak_kb_median'] / 1024:.0f} MB"
        )
        ctx.drop_schema(table["url"])
    first, last = results[0], results[-1]
    return {
        "sizes": sizes.__dict__,
        "results": results,
        "ratio_largest_vs_smallest": last["scan_ms_median"] / first["scan_ms_median"],
        "rss_ratio_largest_vs_smallest": last["rss_peak_kb_median"] / first["rss_peak_kb_median"],
    }


def explain_scan(runtime: Any, due: int) -> dict[str, Any]:
    """The plan of the claim query (run for real inside a rolled-back transaction)."""
    now = dt.datetime.now(dt.UTC)
    stmt = due_rows_statement(now, runtime.settings.scan_batch_size, postgres=True)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    with runtime.engine.connect() as conn:
        trans = conn.begin()
        raw = conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")).scalar_one()
        trans.rollback()
    doc = (raw if isinstance(raw, list) else json.loads(raw))[0]
    nodes = _nodes(doc["Plan"])
    index_nodes = [n for n in nodes if "Index Name" in n]
    return {
        "nodes": " → ".join(
            n["Node Type"] + (f" ({n['Index Name']})" if "Index Name" in n else "") for n in nodes
        ),
        "seq_scan": any(n["Node Type"] == "Seq Scan" for n in nodes),
        "index": index_nodes[0]["Index Name"] if index_nodes else None,
        "index_rows": index_nodes[0].get("Actual Rows") if index_nodes else None,
        "shared_hit": doc["Plan"].get("Shared Hit Blocks"),
        "shared_read": doc["Plan"].get("Shared Read Blocks"),
        "execution_ms": doc.get("Execution Time"),
        "planning_ms": doc.get("Planning Time"),
        "due": due,
    }


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _run_child(env: dict[str, str], sizes: ScanSizes, log_path: Any) -> dict[str, Any]:
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.scan_child",
            "--scans",
            str(sizes.scans_per_child),
            "--due",
            str(sizes.due),
            "--log",
            str(log_path),
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = popen.communicate(timeout=600)
    if popen.returncode != 0:
        raise RuntimeError(f"scan child failed ({popen.returncode}): {err.decode()[-2000:]}")
    data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return data
