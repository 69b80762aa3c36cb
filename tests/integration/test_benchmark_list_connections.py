"""Smoke test of benchmarks/list_connections.py at toy size, so the code can't rot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.common import PG_BASE_URL, Context
from benchmarks.list_connections import ListSizes, bench_list_connections, render_markdown
from sqlalchemy import create_engine, text

from tests.support import require_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def ctx() -> Iterator[Context]:
    """A benchmark context (schemas, a leased Redis database, API processes)."""
    try:
        engine = create_engine(PG_BASE_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        require_service("PostgreSQL", reachable=False)
    context = Context.create(configure_logs=False)
    try:
        yield context
    finally:
        context.close()


def test_list_benchmark_runs_and_pages_are_full(ctx: Context) -> None:
    """Both sizes answer every timed query with a full page of 100 and report memory."""
    result = bench_list_connections(
        ctx, ListSizes(table_sizes=(1_000, 3_000), requests=3, warmup=1)
    )
    assert [r["rows"] for r in result["results"]] == [1_000, 3_000]
    for entry in result["results"]:
        assert entry["rss_peak_mb"] > 0
        for query in entry["queries"].values():
            assert query["page_rows"] == 100
            assert query["requests"] == 3
            assert query["p50_ms"] > 0
    assert result["p50_ratio_largest_vs_smallest"] > 0
    assert "GET /connections?limit=100" in render_markdown(result)
