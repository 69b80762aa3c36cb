"""Benchmark 6: refresh storms and slow token endpoints, through real ``freshtoken api`` processes.

Everything is set up and driven as a user would: ``freshtoken db upgrade``, two ``freshtoken api``
processes on one PostgreSQL schema and one Redis database, connections imported through
``POST /connections``, reads through ``GET /connections/{id}``. The token endpoint is
:mod:`benchmarks.provider` (rotation and reuse detection, an issue timeline per token family).

* **storm**: ``readers`` concurrent reads of one *expired* connection, alternating between the
  two API processes, provider latency ``latency_s``;
* **forced storm**: ``readers`` concurrent ``force_refresh=true`` reads of one *fresh*
  connection.

For each: provider calls, distinct access tokens handed out, and *superseded* tokens handed out:
a response whose token was no longer the family's newest at the provider when the response
arrived at the client (a provider that revokes the previous access token on rotation makes those
dead on arrival), plus p50/p99 latency as the client saw it. Each is repeated on a new connection.

* **trickle**: a token endpoint that sends its answer one byte every ``trickle_interval_s`` for
  up to ``trickle_for_s``, while reads of that expired connection keep arriving at both processes
  every ``trickle_probe_every_s``: how long the provider call ran, whether freshtoken cut it
  (hung up before the body was complete), and whether the same refresh token was presented more
  than once (at the same time, or at all).
* **slow refreshes**: ``slow_refreshes`` concurrent reads of expired connections whose token
  endpoint answers after ``slow_latency_s``, against one API process; meanwhile ``GET /health``
  and reads of another, fresh connection are probed on a fixed schedule: their p50/p99/max.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from benchmarks.api_client import (
    INTEGRATION_KEY,
    connection_body,
    create_integration,
    import_connections,
)
from benchmarks.common import Context, http_json, log, median, percentile
from benchmarks.loadgen import RawClient, split_url
from benchmarks.read_path import db_upgrade


@dataclass(frozen=True)
class StormSizes:
    """Storm shapes and repetitions."""

    readers: int = 200
    latency_s: float = 0.3
    repetitions: int = 5


@dataclass(frozen=True)
class SlowSizes:
    """Slow-endpoint shapes."""

    trickle_interval_s: float = 2.0
    trickle_for_s: float = 45.0
    trickle_probe_every_s: float = 5.0
    slow_refreshes: int = 45
    slow_latency_s: float = 8.0
    probe_gap_s: float = 0.05


@dataclass
class Response:
    """One read as the client saw it."""

    api: int
    status: int
    latency_ms: float
    received: float
    access_token: str | None


async def _read(client: RawClient, path: str, auth: str, api: int, timeout: float) -> Response:
    t0 = time.perf_counter()
    try:
        status, _, body = await asyncio.wait_for(client.get(path, {"Authorization": auth}), timeout)
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        return Response(api, -1, (time.perf_counter() - t0) * 1000, time.time(), None)
    received = time.time()
    token = None
    if status == 200:
        token = (orjson.loads(body).get("credentials") or {}).get("access_token")
    return Response(api, status, (time.perf_counter() - t0) * 1000, received, token)


async def storm(bases: list[str], path: str, auth: str, readers: int) -> list[Response]:
    """``readers`` reads of ``path`` sent at once (connections opened beforehand), round-robin
    over ``bases``."""
    clients = []
    for i in range(readers):
        host, port = split_url(bases[i % len(bases)])
        client = RawClient(host, port)
        await client.connect()
        clients.append(client)
    try:
        return list(
            await asyncio.gather(
                *(_read(c, path, auth, i % len(bases), 60.0) for i, c in enumerate(clients))
            )
        )
    finally:
        for client in clients:
            await client.close()


def superseded(responses: list[Response], issued: list[tuple[float, str]]) -> int:
    """Responses whose token was not the family's newest at the provider when they arrived."""
    count = 0
    for r in responses:
        if r.access_token is None:
            continue
        current = [token for at, token in issued if at <= r.received]
        if not current or current[-1] != r.access_token:
            count += 1
    return count


def _setup(ctx: Context, name: str, apis: int) -> tuple[str, list[Any], list[str]]:
    url = ctx.new_schema(f"bench_{name}")
    ctx.redis.clear()
    env = ctx.env(url)
    db_upgrade(env)
    started = [ctx.api(f"{name}-api-{i + 1}", env) for i in range(apis)]
    create_integration(started[0][1], ctx.secret_key)
    return url, [p for p, _ in started], [u for _, u in started]


def _import_one(
    ctx: Context, base: str, provider_url: str, cid: str, family: dict[str, Any], expires: float
) -> None:
    body = connection_body(
        cid,
        access_token=family["access_token"],
        refresh_token=family["refresh_token"],
        expires_at=expires,
        token_url=provider_url + "/oauth/token",
    )
    import_connections(base, ctx.secret_key, [body], concurrency=1)


def _refresh_lines(procs: list[Any], cid: str) -> list[dict[str, Any]]:
    return [
        e
        for p in procs
        for e in p.json_lines()
        if e.get("event") == "token.refresh" and e.get("connection_id") == cid
    ]


def bench_storm(ctx: Context, sizes: StormSizes) -> dict[str, Any]:
    """Storm and forced storm over two API processes; one new connection per repetition."""
    url, procs, bases = _setup(ctx, "storm", 2)
    provider, provider_url = ctx.bench_provider("storm-provider", latency=sizes.latency_s)
    auth = f"Bearer {ctx.secret_key}"
    # Warm both processes (first request, pools, integration cache) on a connection of its own.
    warm = http_json(provider_url + "/_bench/seed", {"count": 1})[0]
    _import_one(ctx, bases[0], provider_url, "warm", warm, time.time() + 86_400)
    asyncio.run(storm(bases, f"/connections/warm?provider_config_key={INTEGRATION_KEY}", auth, 8))
    kinds: dict[str, list[dict[str, Any]]] = {"expired": [], "forced": []}
    for kind in kinds:
        for rep in range(sizes.repetitions):
            family = http_json(provider_url + "/_bench/seed", {"count": 1})[0]
            cid = f"{kind}-{rep + 1}"
            expires = time.time() + (-60 if kind == "expired" else 86_400)
            _import_one(ctx, bases[0], provider_url, cid, family, expires)
            http_json(provider_url + "/_bench/reset", {})
            query = f"?provider_config_key={INTEGRATION_KEY}"
            if kind == "forced":
                query += "&force_refresh=true"
            responses = asyncio.run(storm(bases, f"/connections/{cid}{query}", auth, sizes.readers))
            time.sleep(0.3)  # the last log lines
            stats = http_json(provider_url + "/_bench/stats")
            issued = http_json(provider_url + "/_bench/issued")[family["family"]]
            ok = [r for r in responses if r.status == 200]
            latencies = [r.latency_ms for r in responses]
            outcomes: dict[str, int] = {}
            for line in _refresh_lines(procs, cid):
                key = str(line.get("outcome"))
                outcomes[key] = outcomes.get(key, 0) + 1
            kinds[kind].append(
                {
                    "readers": len(responses),
                    "ok": len(ok),
                    "statuses": sorted({r.status for r in responses if r.status != 200}),
                    "provider_calls": stats["refresh_calls"],
                    "invalid_grant": stats["invalid_grant"],
                    "distinct_tokens": len({r.access_token for r in ok}),
                    "superseded": superseded(ok, [(t, tok) for t, tok in issued]),
                    "p50_ms": percentile(latencies, 50),
                    "p99_ms": percentile(latencies, 99),
                    "max_ms": max(latencies),
                    "per_api": [sum(1 for r in ok if r.api == i) for i in range(len(bases))],
                    "refresh_lines": outcomes,
                }
            )
            last = kinds[kind][-1]
            log(
                f"storm ({kind} {rep + 1}/{sizes.repetitions}): {last['provider_calls']} calls, "
                f"{last['distinct_tokens']} tokens, {last['superseded']} superseded, "
                f"p99 {last['p99_ms']:.0f} ms"
            )
    for proc in (*procs, provider):
        ctx.stop(proc)
    ctx.drop_schema(url)
    ctx.redis.clear()
    return {"sizes": asdict(sizes), "kinds": {k: _summary(v) for k, v in kinds.items()}}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": runs,
        "provider_calls_median": median(r["provider_calls"] for r in runs),
        "provider_calls_max": max(r["provider_calls"] for r in runs),
        "distinct_tokens_median": median(r["distinct_tokens"] for r in runs),
        "distinct_tokens_max": max(r["distinct_tokens"] for r in runs),
        "superseded_median": median(r["superseded"] for r in runs),
        "superseded_max": max(r["superseded"] for r in runs),
        "superseded_total": sum(r["superseded"] for r in runs),
        "p50_ms_median": median(r["p50_ms"] for r in runs),
        "p99_ms_median": median(r["p99_ms"] for r in runs),
        "errors_total": sum(r["readers"] - r["ok"] for r in runs),
        "invalid_grant_total": sum(r["invalid_grant"] for r in runs),
    }


# -- slow endpoints -------------------------------------------------------------------------------


async def _trickle_reads(
    bases: list[str], path: str, auth: str, sizes: SlowSizes
) -> list[Response]:
    """A read now, then one every ``trickle_probe_every_s`` (alternating processes) until the
    trickle would have ended plus one probe interval; each on its own connection."""
    tasks = []
    count = int((sizes.trickle_for_s + sizes.trickle_probe_every_s) / sizes.trickle_probe_every_s)
    started = time.monotonic()
    for i in range(count + 1):
        delay = started + i * sizes.trickle_probe_every_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        host, port = split_url(bases[i % len(bases)])
        client = RawClient(host, port)
        timeout = sizes.trickle_for_s + 60
        tasks.append(asyncio.create_task(_read(client, path, auth, i % len(bases), timeout)))
    return list(await asyncio.gather(*tasks))


async def _probe(base: str, path: str, auth: str, gap: float, stop: asyncio.Event) -> list[Any]:
    """GET ``path`` every ``gap`` seconds until ``stop``, open loop: each probe is sent on
    schedule on an idle keep-alive connection (a new one if none is idle), whether or not the
    earlier ones were answered (a back-to-back prober would send one probe during a stall and
    hide it in its percentiles). Returns (sent at, ms, status) per probe."""
    host, port = split_url(base)
    tasks: list[asyncio.Task[tuple[float, float, int]]] = []
    idle: list[RawClient] = []
    for _ in range(16):  # keep-alive connections opened beforehand; more only during a stall
        client = RawClient(host, port)
        await client.connect()
        idle.append(client)

    async def one() -> tuple[float, float, int]:
        sent = time.time()
        client = idle.pop() if idle else RawClient(host, port)
        r = await _read(client, path, auth, 0, 120)
        if r.status == -1:
            await client.close()
        else:
            idle.append(client)
        return sent, r.latency_ms, r.status

    started = time.monotonic()
    i = 0
    while not stop.is_set():
        tasks.append(asyncio.create_task(one()))
        i += 1
        await asyncio.sleep(max(0.0, started + i * gap - time.monotonic()))
    results = list(await asyncio.gather(*tasks))
    for client in idle:
        await client.close()
    return results


async def _slow_refreshes(
    base: str, cids: list[str], fresh: str, auth: str, sizes: SlowSizes
) -> dict[str, Any]:
    stop = asyncio.Event()
    q = f"?provider_config_key={INTEGRATION_KEY}"
    health = asyncio.create_task(_probe(base, "/health", auth, sizes.probe_gap_s, stop))
    other = asyncio.create_task(
        _probe(base, f"/connections/{fresh}{q}", auth, sizes.probe_gap_s, stop)
    )
    await asyncio.sleep(1.0)  # probes before the refreshes, for comparison
    fired = time.time()
    clients = []
    for _ in cids:
        host, port = split_url(base)
        client = RawClient(host, port)
        await client.connect()
        clients.append(client)
    reads = await asyncio.gather(
        *(
            _read(c, f"/connections/{cid}{q}", auth, 0, sizes.slow_latency_s + 90)
            for c, cid in zip(clients, cids, strict=True)
        )
    )
    done = time.time()
    stop.set()
    for client in clients:
        await client.close()
    probes = {"health": await health, "other_read": await other}
    out: dict[str, Any] = {
        "window_s": done - fired,
        "reads": {
            "count": len(reads),
            "ok": sum(1 for r in reads if r.status == 200),
            "statuses": sorted({r.status for r in reads}),
            "p50_ms": percentile([r.latency_ms for r in reads], 50),
            "max_ms": max(r.latency_ms for r in reads),
        },
    }
    for name, samples in probes.items():
        during = [ms for sent, ms, _ in samples if fired <= sent <= done]
        before = [ms for sent, ms, _ in samples if sent < fired]
        out[name] = {
            "samples": len(during),
            "errors": sum(1 for sent, _, st in samples if fired <= sent <= done and st != 200),
            "p50_ms": percentile(during, 50),
            "p99_ms": percentile(during, 99),
            "max_ms": max(during) if during else None,
            "before_p50_ms": percentile(before, 50),
        }
    return out


def bench_slow(ctx: Context, sizes: SlowSizes) -> dict[str, Any]:
    """The trickling token endpoint, then ``/health`` during concurrent slow refreshes."""
    url, procs, bases = _setup(ctx, "slow", 2)
    auth = f"Bearer {ctx.secret_key}"
    trickle, trickle_url = ctx.bench_provider("trickle-provider")
    http_json(
        trickle_url + "/_bench/config",
        {"trickle_interval": sizes.trickle_interval_s, "trickle_for": sizes.trickle_for_s},
    )
    family = http_json(trickle_url + "/_bench/seed", {"count": 1})[0]
    _import_one(ctx, bases[0], trickle_url, "trickle", family, time.time() - 60)
    log(f"slow: trickling token endpoint, reads for {sizes.trickle_for_s:g}s")
    reads = asyncio.run(
        _trickle_reads(
            bases, f"/connections/trickle?provider_config_key={INTEGRATION_KEY}", auth, sizes
        )
    )
    time.sleep(0.5)
    stats = http_json(trickle_url + "/_bench/stats")
    calls = [
        {**c, "duration_s": (c["end"] or time.time()) - c["start"]} for c in stats.pop("calls")
    ]
    first = calls[0] if calls else None
    trickle_result = {
        "calls": len(calls),
        "first_call_s": first["duration_s"] if first else None,
        "first_call_cut": bool(first and first["hung_up"]),
        "longest_call_s": max((c["duration_s"] for c in calls), default=None),
        "presentations_of_one_refresh_token": stats["max_presentations_of_one_refresh_token"],
        "same_refresh_token_in_flight_at_once": stats["max_concurrent_same_refresh_token"],
        "reuse_detected": stats["reuse_detected"],
        "invalid_grant": stats["invalid_grant"],
        "reads": len(reads),
        "read_statuses": _counts(r.status for r in reads),
        "first_read_ms": reads[0].latency_ms if reads else None,
        "refresh_lines": [
            {k: line.get(k) for k in ("outcome", "error_code", "trigger", "duration_ms")}
            for line in _refresh_lines(procs, "trickle")
        ],
    }
    log(
        f"slow: first provider call ran {trickle_result['first_call_s']:.1f}s, "
        f"cut by freshtoken: {trickle_result['first_call_cut']}, refresh token presented "
        f"{trickle_result['presentations_of_one_refresh_token']}x"
    )
    ctx.stop(trickle)
    for proc in procs[1:]:
        ctx.stop(proc)  # the slow-refresh part runs against one process

    slow, slow_url = ctx.bench_provider("slow-provider", latency=sizes.slow_latency_s)
    families = http_json(slow_url + "/_bench/seed", {"count": sizes.slow_refreshes + 1})
    cids = [f"slow-{i + 1}" for i in range(sizes.slow_refreshes)]
    bodies = [
        connection_body(
            cid,
            access_token=f["access_token"],
            refresh_token=f["refresh_token"],
            expires_at=time.time() - 60,
            token_url=slow_url + "/oauth/token",
        )
        for cid, f in zip(cids, families, strict=False)
    ]
    fresh = families[-1]
    bodies.append(
        connection_body(
            "fresh-other",
            access_token=fresh["access_token"],
            refresh_token=fresh["refresh_token"],
            expires_at=time.time() + 86_400,
            token_url=slow_url + "/oauth/token",
        )
    )
    import_connections(bases[0], ctx.secret_key, bodies)
    http_json(slow_url + "/_bench/reset", {})
    log(
        f"slow: {sizes.slow_refreshes} concurrent refreshes, provider latency "
        f"{sizes.slow_latency_s:g}s"
    )
    during = asyncio.run(_slow_refreshes(bases[0], cids, "fresh-other", auth, sizes))
    during["provider_max_concurrent"] = http_json(slow_url + "/_bench/stats")["max_concurrent"]
    log(
        f"slow: /health p99 {during['health']['p99_ms']:.0f} ms, other read p99 "
        f"{during['other_read']['p99_ms']:.0f} ms during {during['window_s']:.1f}s"
    )
    ctx.stop(slow)
    ctx.stop(procs[0])
    ctx.drop_schema(url)
    ctx.redis.clear()
    return {"sizes": asdict(sizes), "trickle": trickle_result, "slow_refreshes": during}


def _counts(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out
