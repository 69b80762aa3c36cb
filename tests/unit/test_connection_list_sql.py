"""``GET /connections`` in SQL returns what the former Python filters returned (SQLite)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from tests.connection_list_cases import cases, reference_list, seed
from tests.support import make_runtime, make_settings

from freshtoken.store.connection_list import ListQuery, list_connection_rows


def test_sql_list_matches_the_python_filters_on_sqlite(tmp_path: Path) -> None:
    """Over every single filter and 400 random combinations, SQL returns the same ids in order."""
    runtime = make_runtime(make_settings(tmp_path), with_refresher=False)
    try:
        with runtime.store() as store:
            seed(store.session)
            non_empty = 0
            for query in cases():
                got = [row.id for row in list_connection_rows(store.session, query)]
                assert got == reference_list(store.session, query), query
                non_empty += bool(got)
        # The comparison means something only if many cases return rows.
        assert non_empty > 100
    finally:
        runtime.close()


def test_list_reads_neither_ciphertext_nor_more_rows_than_a_page(tmp_path: Path) -> None:
    """One SELECT per call, without credentials_enc, with LIMIT/OFFSET in the statement."""
    runtime = make_runtime(make_settings(tmp_path), with_refresher=False)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    try:
        with runtime.store() as store:
            seed(store.session)
            store.session.expunge_all()
            event.listen(runtime.engine, "before_cursor_execute", record)
            rows = list_connection_rows(
                store.session, ListQuery(search="a", tags={"env": "prod"}, limit=2, page=1)
            )
            event.remove(runtime.engine, "before_cursor_execute", record)
        assert len(rows) == 2
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1
        assert "credentials_enc" not in selects[0]
        assert "LIMIT" in selects[0].upper() and "OFFSET" in selects[0].upper()
    finally:
        runtime.close()
