"""Benchmark 4: freshness with proactive refresh on, versus refresh-on-read only (Nango's model).

The same workload runs twice, each time on a fresh schema, Redis database state and mock provider
(``latency`` per token call, refresh-token rotation and reuse detection on):

* **on**: ``freshtoken api`` + ``freshtoken worker`` + ``freshtoken beat``;
* **off**: ``freshtoken api`` alone, so reads refresh tokens themselves when inside the read margin.

``connections`` connections with ``lifetime``-second tokens are imported with expiries spread
uniformly over ``[lifetime / 2, 1.5 x lifetime]`` from the start (no token is inside its read
margin at the start, and every token reaches it during the run). Then an open-loop client issues
``read_rate`` reads per second of random connections for ``duration`` seconds, and records each
response's status, latency, ``x-request-id`` and served ``expires_at``.

Evidence comes from three places: the client (latency, the served expiry against the time the
response arrived), the API's JSON log (``token.refresh`` lines with ``trigger: on_read``, matched to
reads by ``request_id``), and the provider's counters (refresh calls, ``invalid_grant``, reuse).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from benchmarks.common import Context, http_json, log, median, parse_ts, percentile, proc_status_kb
from benchmarks.data import INTEGRATION_KEY, import_connections, seed_families
from benchmarks.loadgen import RawClient, split_url
from freshtoken.store.credentials import parse_datetime

SLOW_READ_MS = 250.0


@dataclass(frozen=True)
class FreshnessSizes:
    """The workload of one mode."""

    connections: int = 2000
    lifetime_s: float = 120.0
    duration_s: float = 180.0
    read_rate: float = 100.0
    latency_s: float = 0.3
    scan_interval_s: float = 6.0
    worker_concurrency: int = 16
    worker_pool: str = "prefork"
    client_connections: int = 64


@dataclass
class Read:
    """One read as the client saw it."""

    connection: int
    scheduled: float
    sent: float
    received: float
    latency_ms: float
    status: int
    request_id: str | None
    expires_at: float | None


def bench_freshness(ctx: Context, sizes: FreshnessSizes) -> dict[str, Any]:
    """Run benchmark 4: both modes, one after the other, identical workloads."""
    modes = {}
    for proactive in (True, False):
        name = "on" if proactive else "off"
        modes[name] = run_mode(ctx, sizes, proactive=proactive)
        m = modes[name]
        log(
            f"freshness ({name}): {m['reads']} reads, {m['waited_on_provider']} waited "
            f"({m['waited_pct']:.3f}%), p99 {m['latency_ms']['p99']:.1f} ms, "
            f"expired served {m['expired_served']}"
        )
    return {"sizes": asdict(sizes), "modes": modes}


def run_mode(ctx: Context, sizes: FreshnessSizes, *, proactive: bool) -> dict[str, Any]:
    """One mode: start the processes, import, read for ``duration``, collect the evidence."""
    name = "on" if proactive else "off"
    url = ctx.new_schema(f"bench_fresh_{name}")
    ctx.redis.clear()
    runtime = ctx.runtime(url)
    provider, provider_url = ctx.mock_provider(
        f"fresh-provider-{name}", latency=sizes.latency_s, lifetime=sizes.lifetime_s
    )
    env = ctx.env(url, scan_interval_seconds=sizes.scan_interval_s)
    api, base = ctx.api(f"fresh-api-{name}", env)
    worker = beat = None
    if proactive:
        worker = ctx.worker(
            f"fresh-worker-{name}",
            env,
            concurrency=sizes.worker_concurrency,
            pool=sizes.worker_pool,
        )
        beat = ctx.beat(f"fresh-beat-{name}", env)
    families = seed_families(provider_url, sizes.connections, sizes.lifetime_s)
    rng = random.Random(4)
    # Expiries spread over one lifetime, starting half a lifetime out: no token is inside its read
    # margin (a quarter lifetime) at the start, and every one reaches it during the run.
    offset = sizes.lifetime_s / 2
    expiries = [rng.uniform(offset, offset + sizes.lifetime_s) for _ in range(sizes.connections)]
    imported_at = time.time()
    import_connections(
        runtime,
        families,
        token_url=provider_url + "/oauth/token",
        expiries=expiries,
        lifetime=sizes.lifetime_s,
    )
    http_json(provider_url + "/_mock/reset", {})
    log(
        f"freshness ({name}): {sizes.connections} connections imported in "
        f"{time.time() - imported_at:.1f}s; reading for {sizes.duration_s:.0f}s"
    )
    ctx.redis.renew()
    started = time.time()
    reads = asyncio.run(
        open_loop_reads(
            base,
            ids=sizes.connections,
            rate=sizes.read_rate,
            duration=sizes.duration_s,
            auth=f"Bearer {ctx.secret_key}",
            pool_size=sizes.client_connections,
        )
    )
    ended = time.time()
    stats = http_json(provider_url + "/_mock/stats")
    api_rss_peak_kb = proc_status_kb(api.pid, "VmHWM")
    time.sleep(0.5)  # the last log lines
    api_lines = api.json_lines()
    worker_lines = worker.json_lines() if worker is not None else []
    for proc in (beat, worker, api, provider):
        if proc is not None:
            ctx.stop(proc)
    ctx.drop_schema(url)
    ctx.redis.clear()
    return summarise_mode(
        sizes,
        reads,
        api_lines,
        worker_lines,
        stats,
        started=started,
        ended=ended,
        api_rss_peak_kb=api_rss_peak_kb,
    )


async def open_loop_reads(
    base: str,
    *,
    ids: int,
    rate: float,
    duration: float,
    auth: str,
    pool_size: int,
    seed: int = 11,
    prefix: str = "/connections/c",
) -> list[Read]:
    """Issue ``rate`` reads/s of random connections for ``duration`` s (open loop, paced)."""
    host, port = split_url(base)
    pool: asyncio.Queue[RawClient] = asyncio.Queue()
    for _ in range(pool_size):
        pool.put_nowait(RawClient(host, port))
    rng = random.Random(seed)
    reads: list[Read] = []
    headers = {"Authorization": auth}
    pending: set[asyncio.Task[None]] = set()

    async def one(connection: int, scheduled: float) -> None:
        client = await pool.get()
        sent = time.time()
        t0 = time.perf_counter()
        try:
            status, response_headers, body = await client.get(
                f"{prefix}{connection}?provider_config_key={INTEGRATION_KEY}", headers
            )
        except (OSError, asyncio.IncompleteReadError, ValueError):
            await client.close()
            pool.put_nowait(RawClient(host, port))
            reads.append(Read(connection, scheduled, sent, time.time(), 0.0, -1, None, None))
            return
        latency_ms = (time.perf_counter() - t0) * 1000
        received = time.time()
        pool.put_nowait(client)
        expires_at = None
        if status == 200:
            credentials = orjson.loads(body).get("credentials") or {}
            parsed = parse_datetime(credentials.get("expires_at"))
            expires_at = parsed.timestamp() if parsed is not None else None
        reads.append(
            Read(
                connection,
                scheduled,
                sent,
                received,
                latency_ms,
                status,
                response_headers.get("x-request-id"),
                expires_at,
            )
        )

    start_wall = time.time()
    start = time.perf_counter()
    count = int(duration * rate)
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(rng.randint(1, ids), start_wall + i / rate))
        pending.add(task)
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.gather(*list(pending))
    while not pool.empty():
        await pool.get_nowait().close()
    return reads


def summarise_mode(
    sizes: FreshnessSizes,
    reads: list[Read],
    api_lines: list[dict[str, Any]],
    worker_lines: list[dict[str, Any]],
    stats: dict[str, Any],
    *,
    started: float,
    ended: float,
    api_rss_peak_kb: int | None,
) -> dict[str, Any]:
    """The figures of one mode."""
    ok = [r for r in reads if r.status == 200]
    on_read = [
        e
        for e in api_lines
        if e.get("event") == "token.refresh" and e.get("trigger") in ("on_read", "forced")
    ]
    triggered_ids = {e.get("request_id") for e in on_read if e.get("request_id")}
    waited = [r for r in reads if r.request_id in triggered_ids]
    slow = [r for r in reads if r.latency_ms > SLOW_READ_MS]
    expired = [r for r in ok if r.expires_at is None or r.expires_at <= r.received]
    latencies = [r.latency_ms for r in reads if r.status != -1]
    on_read_outcomes: dict[str, int] = {}
    for e in on_read:
        on_read_outcomes[str(e.get("outcome"))] = on_read_outcomes.get(str(e.get("outcome")), 0) + 1
    scheduled = [
        e
        for e in worker_lines
        if e.get("event") == "token.refresh" and started <= parse_ts(e["timestamp"]) <= ended
    ]
    scheduled_outcomes: dict[str, int] = {}
    for e in scheduled:
        key = f"{e.get('trigger')}/{e.get('outcome')}"
        if e.get("outcome") == "failed" and e.get("error_code"):
            key += f" ({e.get('error_code')})"  # e.g. throttled by the provider rate limit
        scheduled_outcomes[key] = scheduled_outcomes.get(key, 0) + 1
    lead_seconds = sorted(
        float(e["seconds_to_expiry"])
        for e in scheduled
        if e.get("outcome") == "success" and e.get("seconds_to_expiry") is not None
    )
    elapsed = ended - started
    lifetimes_elapsed = sizes.connections * elapsed / sizes.lifetime_s
    per_minute = []
    for minute in range(int(elapsed // 60) + 1):
        lo, hi = started + minute * 60, started + (minute + 1) * 60
        in_window = [r for r in reads if lo <= r.scheduled < hi]
        if not in_window:
            continue
        per_minute.append(
            {
                "minute": minute + 1,
                "reads": len(in_window),
                "waited": sum(1 for r in in_window if r.request_id in triggered_ids),
                "slow": sum(1 for r in in_window if r.latency_ms > SLOW_READ_MS),
            }
        )
    lag = [r.sent - r.scheduled for r in reads]
    return {
        "reads": len(reads),
        "reads_ok": len(ok),
        "errors": len(reads) - len(ok),
        "error_statuses": sorted({r.status for r in reads if r.status != 200}),
        "elapsed_s": round(elapsed, 1),
        "achieved_rate": len(reads) / elapsed,
        "client_lag_ms_max": max(lag) * 1000 if lag else None,
        "waited_on_provider": len(waited),
        "waited_pct": 100 * len(waited) / max(1, len(reads)),
        "on_read_refresh_events": len(on_read),
        "on_read_outcomes": on_read_outcomes,
        "slow_reads": len(slow),
        "slow_pct": 100 * len(slow) / max(1, len(reads)),
        "slow_not_matched": sum(1 for r in slow if r.request_id not in triggered_ids),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else float("nan"),
        },
        "expired_served": len(expired),
        "provider_refresh_calls": stats["refresh_calls"],
        "refresh_calls_per_token_lifetime": stats["refresh_calls"] / lifetimes_elapsed,
        "token_lifetimes_elapsed": lifetimes_elapsed,
        "invalid_grant": stats["invalid_grant"],
        "reuse_detected": stats["reuse_detected"],
        "families_revoked": stats["families_revoked"],
        "provider_max_concurrent": stats["max_concurrent"],
        "worker_refreshes": scheduled_outcomes,
        "worker_seconds_to_expiry": {
            "min": lead_seconds[0] if lead_seconds else None,
            "p1": percentile(lead_seconds, 1) if lead_seconds else None,
            "median": median(lead_seconds) if lead_seconds else None,
        },
        "api_rss_peak_kb": api_rss_peak_kb,
        "per_minute": per_minute,
    }
