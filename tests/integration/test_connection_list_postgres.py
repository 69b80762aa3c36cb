"""``GET /connections`` filters and pages in SQL exactly as the former Python filters did (PG)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from freshtoken.store.connection_list import list_connection_rows
from tests.connection_list_cases import cases, reference_list, seed
from tests.support import make_runtime, make_settings, pg_schema_url

pytestmark = pytest.mark.integration


def test_sql_list_matches_the_python_filters_on_postgres(tmp_path: Path) -> None:
    """Over every single filter and 400 random combinations, SQL returns the same ids in order."""
    runtime = make_runtime(
        make_settings(tmp_path, database_url=pg_schema_url()), with_refresher=False
    )
    assert runtime.engine.dialect.name == "postgresql"
    try:
        with runtime.store() as store:
            seed(store.session)
            non_empty = 0
            for query in cases():
                got = [row.id for row in list_connection_rows(store.session, query)]
                assert got == reference_list(store.session, query), query
                non_empty += bool(got)
        assert non_empty > 100
    finally:
        with runtime.engine.begin() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        runtime.close()
