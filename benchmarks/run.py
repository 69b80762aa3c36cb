"""Run every benchmark side by side and write the report: ``python -m benchmarks.run``.

``make bench`` runs this with the full sizes (about twelve minutes on 2 cores, plus about five for
the ``heal`` timeline) and writes docs/benchmarks.md. ``--quick`` runs toy sizes in a few minutes
and writes its report to a temporary file unless ``--out`` is given: its figures only show that
the code runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Context, log
from benchmarks.drivers import DriverSizes
from benchmarks.early_warning import EarlyWarningSizes, bench_early_warning
from benchmarks.freshness import FreshnessSizes, bench_freshness
from benchmarks.heal import HealSizes, bench_heal
from benchmarks.list_connections import FULL_SIZES, QUICK_SIZES, bench_list_connections
from benchmarks.loadgen import ensure_wrk
from benchmarks.machine import describe, load_average
from benchmarks.read_path import ReadPathSizes, bench_read_path
from benchmarks.refresh_throughput import RefreshSizes, bench_refresh_throughput
from benchmarks.report import render
from benchmarks.scan import ScanSizes, bench_scan
from benchmarks.storm import SlowSizes, StormSizes, bench_slow, bench_storm

DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
SECTIONS = (
    "read_path",
    "storm",
    "slow",
    "scan",
    "refresh",
    "freshness",
    "early_warning",
    "list_connections",
    "heal",
)


@dataclass(frozen=True)
class Preset:
    """The sizes of every benchmark."""

    name: str
    read_path: ReadPathSizes
    scan: ScanSizes
    refresh: tuple[RefreshSizes, ...]
    freshness: FreshnessSizes
    storm: StormSizes
    slow: SlowSizes
    early_warning: EarlyWarningSizes
    heal: HealSizes = field(default_factory=HealSizes)
    notes: tuple[str, ...] = field(default=())


FULL = Preset(
    name="full",
    read_path=ReadPathSizes(
        connections=2000,
        concurrencies=(1, 8, 32),
        workers=(1, 2),
        duration_s=2.0,
        repetitions=5,
        warmup_s=2.0,
    ),
    storm=StormSizes(readers=200, latency_s=0.3, repetitions=5),
    slow=SlowSizes(
        trickle_interval_s=2.0,
        trickle_for_s=45.0,
        trickle_probe_every_s=5.0,
        slow_refreshes=45,
        slow_latency_s=8.0,
    ),
    early_warning=EarlyWarningSizes(
        connections=20,
        lifetime_s=60.0,
        read_rate=10.0,
        scan_interval_s=3.0,
        expiry_from_s=40.0,
        expiry_spread_s=30.0,
        revoke_before_s=36.0,
        tail_s=15.0,
    ),
    scan=ScanSizes(
        table_sizes=(10_000, 100_000, 1_000_000), due=500, children=3, scans_per_child=6
    ),
    refresh=(
        RefreshSizes(concurrency=8, pool="prefork", latency_s=0.1, connections=800, repetitions=3),
        RefreshSizes(concurrency=16, pool="threads", latency_s=0.1, connections=600, repetitions=3),
    ),
    freshness=FreshnessSizes(
        connections=1000,
        lifetime_s=60.0,
        duration_s=75.0,
        read_rate=100.0,
        latency_s=0.3,
        scan_interval_s=3.0,
        worker_concurrency=16,
        worker_pool="prefork",
    ),
    heal=HealSizes(),  # the shape: see benchmarks/heal.py and the report's Sizes
)

QUICK = Preset(
    name="quick",
    read_path=ReadPathSizes(
        connections=200,
        concurrencies=(8,),
        workers=(1, 2),
        duration_s=1.0,
        repetitions=1,
        warmup_s=0.5,
        drivers=DriverSizes(clients=(8,), duration_s=0.3, repetitions=1),
    ),
    storm=StormSizes(readers=50, latency_s=0.3, repetitions=1),
    slow=SlowSizes(
        trickle_interval_s=0.5,
        trickle_for_s=4.0,
        trickle_probe_every_s=1.0,
        slow_refreshes=10,
        slow_latency_s=2.0,
    ),
    early_warning=EarlyWarningSizes(
        connections=4,
        lifetime_s=20.0,
        read_rate=4.0,
        scan_interval_s=1.0,
        expiry_from_s=16.0,
        expiry_spread_s=6.0,
        revoke_before_s=13.0,
        tail_s=6.0,
    ),
    scan=ScanSizes(table_sizes=(1_000, 5_000), due=50, children=1, scans_per_child=2),
    refresh=(
        RefreshSizes(
            concurrency=2, pool="prefork", latency_s=0.1, connections=20, repetitions=1, warmup=4
        ),
    ),
    freshness=FreshnessSizes(
        connections=60,
        lifetime_s=12.0,
        duration_s=6.0,
        read_rate=20.0,
        latency_s=0.3,
        scan_interval_s=1.0,
        worker_concurrency=2,
        worker_pool="prefork",
        client_connections=8,
    ),
    heal=HealSizes(
        connections=20,
        lifetime_s=30.0,
        read_rate=10.0,
        reader_threads=4,
        scan_interval_s=1.0,
        retry_backoff_max_s=4,
        warmup_s=4.0,
        replace_after_s=2.0,
        redis_down_s=3.0,
        pg_down_s=3.0,
        provider_500_s=4.0,
        tail_extra_s=3.0,
        sample_every_s=0.5,
    ),
)


def run_sections(
    ctx: Context, preset: Preset, sections: tuple[str, ...], wrk: str | None
) -> dict[str, Any]:
    """Run the chosen benchmarks; a failing one is recorded (with its traceback) and skipped."""
    runners: dict[str, Callable[[], Any]] = {
        "read_path": lambda: bench_read_path(ctx, preset.read_path, wrk=wrk),
        "storm": lambda: bench_storm(ctx, preset.storm),
        "slow": lambda: bench_slow(ctx, preset.slow),
        "scan": lambda: bench_scan(ctx, preset.scan),
        "refresh": lambda: [bench_refresh_throughput(ctx, s) for s in preset.refresh],
        "freshness": lambda: bench_freshness(ctx, preset.freshness),
        "early_warning": lambda: bench_early_warning(ctx, preset.early_warning),
        "list_connections": lambda: bench_list_connections(
            ctx, QUICK_SIZES if preset.name == "quick" else FULL_SIZES
        ),
        "heal": lambda: bench_heal(ctx, preset.heal),
    }
    results: dict[str, Any] = {}
    for name in sections:
        log(f"== {name}")
        started = time.monotonic()
        try:
            results[name] = {"result": runners[name]()}
        except Exception as exc:  # report what ran; the failure is in the report and exit code
            log(f"{name} FAILED: {exc}")
            results[name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        results[name]["seconds"] = round(time.monotonic() - started, 1)
        log(f"== {name} took {results[name]['seconds']:.0f}s")
    return results


def command_line(argv: list[str]) -> str:
    """How this run was started, as someone would retype it."""
    python = os.path.relpath(sys.executable, REPO_ROOT)
    if not python.startswith(".venv"):
        python = sys.executable
    direct = shlex.join([python, "-m", "benchmarks.run", *argv])
    if os.environ.get("MAKELEVEL") and not argv:
        return f"make bench  (runs {direct})"
    return direct


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, write the report; exit status 1 if a benchmark failed."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy sizes, under a minute")
    parser.add_argument("--out", type=Path, default=None, help="report path")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections, any of: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    parser.add_argument(
        "--note", action="append", default=[], help="a sentence for the report's top (repeatable)"
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="read-path load generator (auto: wrk, installed with apt-get if missing and root)",
    )
    args = parser.parse_args(args_list)
    preset = QUICK if args.quick else FULL
    sections = tuple(s for s in args.only.split(",") if s)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    out = args.out
    if out is None:
        out = (
            Path(tempfile.gettempdir()) / "freshtoken-benchmarks-quick.md"
            if args.quick
            else DEFAULT_OUT
        )

    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    ctx = Context.create(keep_workdir=args.keep_logs)
    try:
        wrk = None
        if args.loadgen != "python":
            wrk = ensure_wrk(install=not args.quick)
            if wrk is None and args.loadgen == "wrk":
                parser.error("wrk is not available")
        machine = describe(ctx.pg_base_url, ctx.redis.url, wrk)
        machine["load_start"] = load_average()
        results = run_sections(ctx, preset, sections, wrk)
        machine["load_end"] = load_average()
    finally:
        ctx.close()
    total_s = time.monotonic() - started
    document = render(
        preset=preset,
        machine=machine,
        results=results,
        command=command_line(args_list),
        started_at=started_at,
        total_s=total_s,
        notes=tuple(args.note),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "results": results, "total_s": total_s}, default=str, indent=1
            ),
            encoding="utf-8",
        )
    if args.keep_logs:
        log(f"process logs kept in {ctx.workdir}")
    log(f"wrote {out} ({total_s / 60:.1f} min)")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
