"""The proactive scan reads only due rows: its PostgreSQL plan uses the next_refresh_at index."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql

from freshtoken import migrate
from freshtoken.worker.scan import due_rows_statement
from tests.support import pg_schema_url

pytestmark = pytest.mark.integration

TABLE_ROWS = 100_000
DUE_ROWS = 50


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def test_scan_plan_uses_the_index_and_reads_only_due_rows() -> None:
    """With 100k live connections and 50 due, the scan is an index scan touching ~50 rows."""
    engine = create_engine(pg_schema_url())
    migrate.upgrade(engine)
    now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO integrations (unique_key, provider, created_at, updated_at) "
                "VALUES ('i', 'oauth2', now(), now())"
            )
        )
        # Most rows are due in the future; DUE_ROWS are overdue by a few minutes.
        conn.execute(
            text(
                "INSERT INTO connections (connection_id, provider_config_key, provider, "
                "integration_id, credentials_type, has_refresh_token, connection_config, tags, "
                "refresh_exhausted, needs_reauth, version, created_at, updated_at, expires_at, "
                "next_refresh_at) "
                "SELECT 'c' || g, 'i', 'oauth2', 1, 'OAUTH2', true, '{}', '{}', false, false, 1, "
                "now(), now(), :now + (g || ' seconds')::interval, "
                "CASE WHEN g <= :due THEN :now - interval '5 minutes' "
                "ELSE :now + (g || ' seconds')::interval END "
                "FROM generate_series(1, :n) AS g"
            ),
            {"now": now.replace(tzinfo=None), "due": DUE_ROWS, "n": TABLE_ROWS},
        )
        conn.execute(text("ANALYZE connections"))
        stmt = due_rows_statement(now, 500, postgres=True)
        sql = str(
            stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        )
        raw = conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")).scalar_one()
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    nodes = _nodes(plan)
    kinds = {n["Node Type"] for n in nodes}
    assert "Seq Scan" not in kinds, kinds
    index_nodes = [n for n in nodes if n["Node Type"] in ("Index Scan", "Bitmap Index Scan")]
    assert any(n.get("Index Name") == "ix_connections_next_refresh_at" for n in index_nodes)
    scanned = max(n.get("Actual Rows", 0) for n in index_nodes)
    assert scanned == DUE_ROWS
    engine.dispose()
