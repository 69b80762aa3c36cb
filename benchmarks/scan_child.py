"""A worker-like process that runs the proactive scan and reports its time and peak memory.

``python -m benchmarks.scan_child --scans K --due D --log PATH`` builds the runtime and the Celery
app from ``FRESHTOKEN_*`` variables exactly as a ``freshtoken worker`` process has them, then runs
one untimed scan and K timed scans of ``RefreshScanner(runtime, enqueue=<no-op>).scan()``. Before
each scan the D due rows (ids 1..D) are made due again (untimed). It prints one JSON line: the
scan times, what each scan claimed, and the process's RSS after start-up and at its peak
(``VmHWM`` and ``getrusage``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

from sqlalchemy import text

RESET_SQL = (
    "UPDATE connections SET "
    "next_refresh_at = timezone('utc', now()) - interval '5 minutes', "
    "refresh_claimed_until = NULL, "
    "expires_at = timezone('utc', now()) + interval '60 seconds', "
    "last_refresh_success = timezone('utc', now()) - interval '3540 seconds' "
    "WHERE id <= :due"
)


def _status_kb(field: str) -> int | None:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def main() -> None:
    """Run the scans and print the JSON report on stdout."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan_child")
    parser.add_argument("--scans", type=int, required=True)
    parser.add_argument("--due", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    from freshtoken.logs import configure_logging
    from freshtoken.runtime import build_runtime
    from freshtoken.settings import Settings
    from freshtoken.worker.celery_app import create_celery
    from freshtoken.worker.scan import RefreshScanner

    settings = Settings()
    configure_logging("INFO", "json", stream=open(args.log, "a", encoding="utf-8"))  # noqa: SIM115
    runtime = build_runtime(settings)
    create_celery(settings, runtime)  # what a worker process holds besides the runtime
    scanner = RefreshScanner(runtime, lambda _job: None)

    def reset() -> None:
        with runtime.engine.begin() as conn:
            conn.execute(text(RESET_SQL), {"due": args.due})

    # Where a scan's time goes: wall time of each statement the scan sends (SELECT ... FOR UPDATE
    # pages, the claim UPDATE executemany); the rest is ORM, job planning and COMMIT. Taken with
    # SQLAlchemy engine events.
    from sqlalchemy import event

    phases: dict[str, float] = {}
    accounting = {"on": False}

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def _before(conn: Any, *_args: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @event.listens_for(runtime.engine, "after_cursor_execute")
    def _after(
        conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> None:
        if accounting["on"]:
            kind = statement.lstrip().split(None, 1)[0].upper()
            key = f"{kind} x{len(parameters)}" if executemany else kind
            phases[key] = phases.get(key, 0.0) + time.perf_counter() - conn.info["bench_t0"]

    rss_setup_kb = _status_kb("VmRSS")
    reset()
    scanner.scan()  # warm-up: connection pool, statement caches
    rss_warm_kb = _status_kb("VmRSS")
    times_ms: list[float] = []
    claimed: list[int] = []
    pages: list[int] = []
    for _ in range(args.scans):
        reset()
        accounting["on"] = True
        started = time.perf_counter()
        report = scanner.scan()
        times_ms.append((time.perf_counter() - started) * 1000)
        accounting["on"] = False
        claimed.append(report.claimed)
        pages.append(report.pages)
    runtime.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stdout.write(
        json.dumps(
            {
                "scan_ms": times_ms,
                "claimed": claimed,
                "pages": pages,
                "statement_ms_per_scan": {
                    k: v * 1000 / args.scans for k, v in sorted(phases.items())
                },
                "rss_setup_kb": rss_setup_kb,
                "rss_warm_kb": rss_warm_kb,
                "vm_hwm_kb": _status_kb("VmHWM"),
                "ru_maxrss_kb": usage.ru_maxrss,
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
