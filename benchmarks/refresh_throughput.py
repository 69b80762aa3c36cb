"""Benchmark 3: refreshes per second through real Celery workers, against the provider's bound.

A ``freshtoken mock-provider`` process answers every token call after ``latency`` seconds; one
``freshtoken worker`` process (prefork, ``concurrency`` children) consumes from the leased Redis
database. Each repetition makes every connection due, runs the real scan (claim + enqueue through
the Celery app, countdown 0 because each token is inside its read margin) and waits until the
worker has logged one ``token.refresh`` per connection. The rate comes from those log lines:
connections / (last end - first start). With one provider call per refresh and nothing else, the
bound is ``concurrency / latency`` refreshes/s.

The global provider rate limit (default 50/s, which would cap this below the bound) is raised for
this benchmark only: it measures the workers, not the limiter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from benchmarks.common import Context, http_json, log, median, parse_ts, wait_until
from benchmarks.data import import_connections, seed_families
from freshtoken.worker.celery_app import MAX_COUNTDOWN_SECONDS, REFRESH_TASK, create_celery
from freshtoken.worker.scan import Job, RefreshScanner

MAKE_DUE_SQL = (
    "UPDATE connections SET "
    "expires_at = timezone('utc', now()) + interval '60 seconds', "
    "last_refresh_success = timezone('utc', now()) - interval '3540 seconds', "
    "next_refresh_at = timezone('utc', now()) - interval '1 second', "
    "refresh_claimed_until = NULL "
    "WHERE id IN (SELECT id FROM connections ORDER BY id LIMIT :n)"
)


@dataclass(frozen=True)
class RefreshSizes:
    """Worker shape, provider latency and batch sizes."""

    concurrency: int = 8
    pool: str = "prefork"
    latency_s: float = 0.1
    connections: int = 1200
    repetitions: int = 3
    warmup: int = 48


def bench_refresh_throughput(ctx: Context, sizes: RefreshSizes) -> dict[str, Any]:
    """Run benchmark 3."""
    url = ctx.new_schema("bench_refresh")
    ctx.redis.clear()
    runtime = ctx.runtime(url, provider_rate_limit_per_second=100_000)
    provider, provider_url = ctx.mock_provider(
        "refresh-provider", latency=sizes.latency_s, lifetime=3600
    )
    families = seed_families(provider_url, sizes.connections, 3600)
    import_connections(
        runtime,
        families,
        token_url=provider_url + "/oauth/token",
        expiries=[3000.0] * sizes.connections,
        lifetime=3600,
    )
    env = ctx.env(url, provider_rate_limit_per_second=100_000)
    worker = ctx.worker("refresh-worker", env, concurrency=sizes.concurrency, pool=sizes.pool)
    app = create_celery(runtime.settings, runtime)
    refresh_task = app.tasks[REFRESH_TASK]

    def enqueue(job: Job) -> None:
        refresh_task.apply_async(
            args=(job.connection_pk, job.provider, job.trigger, job.seen_version),
            countdown=min(job.countdown, MAX_COUNTDOWN_SECONDS),
        )

    scanner = RefreshScanner(runtime, enqueue)

    def one_batch(n: int) -> dict[str, Any]:
        before = len(_refresh_events(worker))
        stats_before = http_json(provider_url + "/_mock/stats")
        with runtime.engine.begin() as conn:
            conn.execute(text(MAKE_DUE_SQL), {"n": n})
        scan_started = time.time()
        report = scanner.scan()
        enqueue_s = time.time() - scan_started
        wait_until(
            lambda: len(_refresh_events(worker)) >= before + report.enqueued,
            120 + n / 5,
            f"{report.enqueued} refreshes",
            interval=0.25,
            procs=[worker],
        )
        events = _refresh_events(worker)[before:]
        stats = http_json(provider_url + "/_mock/stats")
        starts = [parse_ts(e["timestamp"]) - e["duration_ms"] / 1000 for e in events]
        ends = sorted(parse_ts(e["timestamp"]) for e in events)
        span = max(ends) - min(starts)
        lo, hi = int(len(ends) * 0.1), int(len(ends) * 0.9) - 1
        steady = (hi - lo) / (ends[hi] - ends[lo]) if hi > lo and ends[hi] > ends[lo] else None
        outcomes: dict[str, int] = {}
        for e in events:
            outcomes[e["outcome"]] = outcomes.get(e["outcome"], 0) + 1
        return {
            "refreshes": len(events),
            "enqueued": report.enqueued,
            "enqueue_s": round(enqueue_s, 3),
            "span_s": round(span, 3),
            "rate": len(events) / span,
            "steady_rate": steady,
            "duration_ms_p50": median(e["duration_ms"] for e in events),
            "outcomes": outcomes,
            "provider_calls": stats["refresh_calls"] - stats_before["refresh_calls"],
            "invalid_grant": stats["invalid_grant"] - stats_before["invalid_grant"],
            "provider_max_concurrent": stats["max_concurrent"],
        }

    one_batch(sizes.warmup)
    runs = []
    for rep in range(sizes.repetitions):
        http_json(provider_url + "/_mock/reset", {})
        runs.append(one_batch(sizes.connections))
        log(
            f"refresh throughput: repetition {rep + 1}/{sizes.repetitions}: "
            f"{runs[-1]['rate']:.1f}/s"
        )
    worker_rss_kb = _tree_rss(worker.pid)
    ctx.stop(worker)
    ctx.stop(provider)
    ctx.drop_schema(url)
    ctx.redis.clear()
    bound = sizes.concurrency / sizes.latency_s
    rate = median(r["rate"] for r in runs)
    return {
        "sizes": sizes.__dict__,
        "bound": bound,
        "rate_median": rate,
        "steady_rate_median": median(r["steady_rate"] for r in runs if r["steady_rate"]),
        "ratio": rate / bound,
        "runs": runs,
        "worker_tree_rss_kb": worker_rss_kb,
    }


def _refresh_events(worker: Any) -> list[dict[str, Any]]:
    # A throttled attempt (no rate-limit slot in time) is re-queued, not finished: not counted.
    return [
        e
        for e in worker.json_lines()
        if e.get("event") == "token.refresh" and e.get("error_code") != "throttled"
    ]


def _tree_rss(pid: int) -> int:
    from benchmarks.common import tree_rss_kb

    return tree_rss_kb(pid)
