"""Smoke test of the benchmarks (benchmarks/): each one runs at toy size, so the code can't rot.

The figures are not checked (toy sizes on a shared machine mean nothing); what is checked is that
every benchmark runs end to end against the real PostgreSQL and Redis, returns the fields the
report needs, and that the report renders. freshtoken's correctness guarantees that hold at any
size (no expired token served, no refresh token spent twice) are asserted too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from benchmarks.common import PG_BASE_URL, REDIS_BASE_URL, Context
from benchmarks.early_warning import bench_early_warning
from benchmarks.freshness import bench_freshness
from benchmarks.heal import bench_heal, servers_available
from benchmarks.read_path import bench_read_path
from benchmarks.refresh_throughput import bench_refresh_throughput
from benchmarks.report import render
from benchmarks.run import QUICK
from benchmarks.scan import bench_scan
from benchmarks.storm import bench_slow, bench_storm, superseded
from sqlalchemy import create_engine, text
from tests.fault_helpers import unavailable
from tests.support import require_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RESULTS: dict[str, Any] = {}


def _reachable() -> None:
    try:
        engine = create_engine(PG_BASE_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        require_service("PostgreSQL", reachable=False)
    try:
        redis.Redis.from_url(REDIS_BASE_URL).ping()
    except redis.RedisError:
        require_service("Redis", reachable=False)


@pytest.fixture(scope="module")
def ctx() -> Iterator[Context]:
    """One benchmark context (schemas, a leased Redis database, processes) for the module."""
    _reachable()
    context = Context.create(configure_logs=False)
    try:
        yield context
    finally:
        context.close()


def test_read_path_runs(ctx: Context) -> None:
    """freshtoken and the raw ASGI baseline both answer every request, per worker count."""
    result = bench_read_path(ctx, QUICK.read_path, wrk=None)  # the Python load generator
    RESULTS["read_path"] = {"result": result, "seconds": 0.0}
    expected = [(w, c) for w in QUICK.read_path.workers for c in QUICK.read_path.concurrencies]
    assert [(row["workers"], row["concurrency"]) for row in result["summary"]] == expected
    for row in result["summary"]:
        for endpoint in ("freshtoken", "baseline"):
            assert row[endpoint]["rps"] > 0
            assert row[endpoint]["errors"] == 0
        assert row["ratio"] > 0
    assert result["memory"]["1"]["end_kb"] > 0


def test_superseded_counts_tokens_replaced_before_arrival() -> None:
    """A token counts as superseded when a newer one was issued before the response arrived."""
    from benchmarks.storm import Response

    issued = [(10.0, "a"), (20.0, "b")]
    responses = [
        Response(0, 200, 1.0, 15.0, "a"),  # current when it arrived
        Response(0, 200, 1.0, 25.0, "a"),  # "b" was issued at 20: superseded
        Response(0, 200, 1.0, 25.0, "b"),
        Response(0, 424, 1.0, 25.0, None),  # no token: not counted
    ]
    assert superseded(responses, issued) == 1


def test_storm_runs(ctx: Context) -> None:
    """Both storms run over two API processes; every reader gets a token that was current."""
    result = bench_storm(ctx, QUICK.storm)
    RESULTS["storm"] = {"result": result, "seconds": 0.0}
    for kind in ("expired", "forced"):
        k = result["kinds"][kind]
        assert k["errors_total"] == 0
        assert k["invalid_grant_total"] == 0
        assert k["provider_calls_max"] >= 1
        for run in k["runs"]:
            assert run["readers"] == QUICK.storm.readers
            assert all(n > 0 for n in run["per_api"])  # both processes served


def test_slow_runs(ctx: Context) -> None:
    """The trickling endpoint is called and the probes during slow refreshes are answered."""
    result = bench_slow(ctx, QUICK.slow)
    RESULTS["slow"] = {"result": result, "seconds": 0.0}
    trickle = result["trickle"]
    assert trickle["calls"] >= 1
    assert trickle["first_call_s"] > 0
    during = result["slow_refreshes"]
    assert during["reads"]["count"] == QUICK.slow.slow_refreshes
    for probe in ("health", "other_read"):
        assert during[probe]["samples"] > 0
        assert during[probe]["errors"] == 0


def test_scan_runs(ctx: Context) -> None:
    """Every table size is scanned through the index, claiming exactly the due rows."""
    result = bench_scan(ctx, QUICK.scan)
    RESULTS["scan"] = {"result": result, "seconds": 0.0}
    assert [r["rows"] for r in result["results"]] == list(QUICK.scan.table_sizes)
    for r in result["results"]:
        assert r["claimed"] == [QUICK.scan.due]
        assert r["plan"]["index"] == "ix_connections_next_refresh_at"
        assert not r["plan"]["seq_scan"]
        assert r["rss_peak_kb_median"] > 0


def test_refresh_throughput_runs(ctx: Context) -> None:
    """The worker refreshes every enqueued connection once, with no invalid_grant."""
    results = [bench_refresh_throughput(ctx, sizes) for sizes in QUICK.refresh]
    RESULTS["refresh"] = {"result": results, "seconds": 0.0}
    for result in results:
        assert result["rate_median"] > 0
        for run in result["runs"]:
            assert run["refreshes"] == run["enqueued"] == result["sizes"]["connections"]
            assert run["invalid_grant"] == 0


def test_freshness_runs(ctx: Context) -> None:
    """Both modes serve every read, never an expired token, never a refresh token twice."""
    result = bench_freshness(ctx, QUICK.freshness)
    RESULTS["freshness"] = {"result": result, "seconds": 0.0}
    expected_reads = int(QUICK.freshness.duration_s * QUICK.freshness.read_rate)
    for mode in ("on", "off"):
        m = result["modes"][mode]
        assert m["reads"] == expected_reads
        assert m["expired_served"] == 0
        assert m["invalid_grant"] == 0
        assert m["reuse_detected"] == 0
    assert result["modes"]["on"]["worker_refreshes"]  # the worker did refresh


def test_early_warning_runs(ctx: Context) -> None:
    """Every revoked grant's failure becomes known in both modes, and the warning is measured."""
    result = bench_early_warning(ctx, QUICK.early_warning)
    RESULTS["early_warning"] = {"result": result, "seconds": 0.0}
    assert result["source"] in ("webhook", "log")
    for mode in ("on", "off"):
        m = result["modes"][mode]
        assert m["known"] == QUICK.early_warning.connections
        assert m["warning_s_min"] is not None
    # Proactive refresh found the failures itself, before any read did.
    assert set(result["modes"]["on"]["failure_triggers"]) <= {"scheduled", "keepalive"}


def test_heal_runs(ctx: Context) -> None:
    """The fault timeline runs at toy size on private servers: every fault is measured through
    both APIs, no expired token is served, and every process is alive at the end."""
    missing = servers_available()
    if missing is not None:
        unavailable(missing)
    result = bench_heal(ctx, QUICK.heal)
    RESULTS["heal"] = {"result": result, "seconds": 0.0}
    assert [f["fault"] for f in result["faults"]] == [
        "worker SIGKILL",
        "Redis down",
        "PostgreSQL restart",
        "provider 500s",
    ]
    assert sorted(result["reads_per_api"]) == ["0", "1"]
    assert result["expired_served"] == 0
    assert result["samples_db_down"] >= 1  # the sampler saw the PostgreSQL outage
    for fault in result["faults"]:
        assert fault["reads_during"] + fault["reads_after"] > 0
    assert all(result["processes_alive_at_end"].values()), result["processes_alive_at_end"]


def _machine() -> dict[str, Any]:
    """A machine description with every field the report reads."""
    return {
        "cpu_model": "test",
        "cpu_count": 2,
        "cpu_affinity": 2,
        "mem_total_gib": 1.0,
        "kernel": "test",
        "python": "test",
        "packages": {"freshtoken": "0"},
        "git": {"commit": None, "dirty": False},
        "postgresql": "test",
        "postgresql_settings": {},
        "redis": "test",
        "load_generator": "test",
        "load_start": (0.0, 0.0, 0.0),
        "load_end": (0.0, 0.0, 0.0),
    }


def test_report_renders(tmp_path: Path) -> None:
    """Renders whatever the tests above produced (sections that did not run say so)."""
    document = render(
        preset=QUICK,
        machine=_machine(),
        results=dict(RESULTS),
        command="python -m benchmarks.run --quick",
        started_at=dt.datetime.now(dt.UTC),
        total_s=1.0,
    )
    (tmp_path / "benchmarks.md").write_text(document)
    for heading in ("## Summary", "## 1 ·", "## 2 ·", "## 3 ·", "## 4 ·", "## 5 ·", "## Caveats"):
        assert heading in document
    if "storm" in RESULTS:
        assert "## 6 ·" in document
    if "slow" in RESULTS:
        assert "## 7 ·" in document
    if "early_warning" in RESULTS:
        assert "## 8 ·" in document
    if "heal" in RESULTS:
        assert "## 10 ·" in document
        assert "| 10 | time to heal" in document


def test_report_renders_list_connections() -> None:
    """The list benchmark's result (shape of benchmarks.list_connections) becomes section 9
    and two summary rows; its table is the benchmark's own rendering."""
    query = {"p50_ms": 4.0, "p95_ms": 6.0, "page_rows": 100, "requests": 3}
    result = {
        "sizes": {"table_sizes": (1_000, 3_000), "requests": 3, "warmup": 1},
        "results": [
            {
                "rows": rows,
                "insert_s": 0.1,
                "rss_idle_mb": 90.0,
                "rss_peak_mb": peak,
                "queries": {
                    "limit=100": query,
                    "limit=100&page=5": query,
                    "limit=100&integrationId": query,
                },
            }
            for rows, peak in ((1_000, 100.0), (3_000, 104.0))
        ],
        "p50_ratio_largest_vs_smallest": 1.0,
        "rss_ratio_largest_vs_smallest": 1.04,
    }
    document = render(
        preset=QUICK,
        machine=_machine(),
        results={"list_connections": {"result": result, "seconds": 0.0}},
        command="python -m benchmarks.run --quick --only list_connections",
        started_at=dt.datetime.now(dt.UTC),
        total_s=1.0,
    )
    assert "## 9 ·" in document
    assert "| `GET /connections?limit=100` | 4.0 |" in document
    assert document.count("| 9 |") == 2


def test_benchmark_provider_rotates_detects_reuse_and_revokes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The storm benchmarks' token endpoint: rotation, reuse detection, revocation, timeline."""
    import asyncio

    import httpx
    from benchmarks import provider

    async def run() -> None:
        fresh = provider.State()
        fresh.reset()
        monkeypatch.setattr(provider, "STATE", fresh)
        transport = httpx.ASGITransport(app=provider.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            fam, other = (await client.post("/_bench/seed", json={"count": 2})).json()

            async def refresh(rt: str) -> httpx.Response:
                data = {"grant_type": "refresh_token", "refresh_token": rt}
                return await client.post("/oauth/token", data=data)

            first = await refresh(fam["refresh_token"])
            assert first.status_code == 200
            assert first.json()["refresh_token"] != fam["refresh_token"]
            # The spent refresh token again: invalid_grant, and the family is revoked.
            assert (await refresh(fam["refresh_token"])).json()["error"] == "invalid_grant"
            assert (await refresh(first.json()["refresh_token"])).status_code == 400
            # A revoked grant refuses its live refresh token.
            await client.post("/_bench/revoke", json={"family": other["family"]})
            assert (await refresh(other["refresh_token"])).status_code == 400
            stats = (await client.get("/_bench/stats")).json()
            assert stats["refresh_calls"] == 4
            assert stats["reuse_detected"] == 1
            assert stats["max_presentations_of_one_refresh_token"] == 2
            issued = (await client.get("/_bench/issued")).json()
            assert [token for _, token in issued[fam["family"]]] == [
                fam["access_token"],
                first.json()["access_token"],
            ]

    asyncio.run(run())
