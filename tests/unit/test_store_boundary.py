"""Every query lives in ``freshtoken/store/``: nothing else builds SELECT/UPDATE/INSERT/DELETE/text.

Why an ``ast`` walk rather than ruff's ``flake8-tidy-imports`` banned-api: banned-api matches
fully qualified names one by one, so each spelling of the same construct would need its own entry
(``sqlalchemy.select``, ``sqlalchemy.sql.select``, ``sqlalchemy.sql.expression.select``,
``sqlalchemy.future.select``, ``sqlalchemy.dialects.postgresql.insert``, ``...sqlite.insert``, ...)
and every test module that builds SQL would need a per-file ignore. The walk below bans the five
names from ``sqlalchemy`` and any of its submodules by prefix, also when reached through a module
alias (``import sqlalchemy as sa; sa.select``), and names the two allowed directories in one place.

Allowed: ``store/`` (the queries) and ``migrations/`` (Alembic's DDL). ``db/`` holds the engine and
column types only and is held to the rule like every other package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import freshtoken

BANNED = frozenset({"select", "update", "insert", "delete", "text"})
ALLOWED_DIRS = ("store", "migrations")
PACKAGE = Path(freshtoken.__file__).parent


def _is_sqlalchemy(module: str | None) -> bool:
    return module is not None and (module == "sqlalchemy" or module.startswith("sqlalchemy."))


def query_builders(source: str) -> list[str]:
    """``line: name`` of every query builder a module imports or reaches through sqlalchemy."""
    tree = ast.parse(source)
    found: list[str] = []
    module_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_sqlalchemy(alias.name):
                    module_aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and _is_sqlalchemy(node.module):
            for alias in node.names:
                if alias.name in BANNED:
                    found.append(f"{node.lineno}: {node.module}.{alias.name}")
                else:
                    # ``from sqlalchemy import sql`` / ``from sqlalchemy.dialects import sqlite``:
                    # a module whose attributes are checked below (other names are harmless).
                    module_aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in BANNED
            and isinstance(node.value, ast.Name | ast.Attribute)
            and _root_name(node.value) in module_aliases
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _modules_outside_the_store() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ALLOWED_DIRS
    ]


def test_no_module_outside_the_store_builds_queries() -> None:
    """No module outside store/ and migrations/ imports select/update/insert/delete/text."""
    offenders = {
        str(path.relative_to(PACKAGE)): hits
        for path in _modules_outside_the_store()
        if (hits := query_builders(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, (
        f"queries belong in freshtoken/store/ (add a store function and call it): {offenders}"
    )


def test_the_walk_covers_the_package() -> None:
    """The walk sees the modules that used to build queries (so it cannot pass vacuously)."""
    seen = {str(p.relative_to(PACKAGE)) for p in _modules_outside_the_store()}
    assert {"worker/scan.py", "keyrotation.py", "api/routes/integrations.py"} <= seen
    assert not any(s.startswith(("store/", "migrations/")) for s in seen)


def test_every_spelling_of_a_query_builder_is_caught() -> None:
    """Direct imports, submodule imports, dialect inserts and module aliases are all reported."""
    source = "\n".join(
        [
            "from sqlalchemy import select, Engine",
            "from sqlalchemy.sql.expression import text",
            "from sqlalchemy.dialects.postgresql import insert as pg_insert",
            "import sqlalchemy as sa",
            "from sqlalchemy.dialects import sqlite",
            "sa.update(x)",
            "sqlite.insert(x)",
            "sa.sql.delete(x)",
        ]
    )
    assert query_builders(source) == [
        "1: sqlalchemy.select",
        "2: sqlalchemy.sql.expression.text",
        "3: sqlalchemy.dialects.postgresql.insert",
        "6: sa.update",
        "7: sqlite.insert",
        "8: sa.sql.delete",
    ]


def test_harmless_sqlalchemy_imports_are_allowed() -> None:
    """Engines, sessions, events and exceptions are not queries: importing them is fine."""
    source = "\n".join(
        [
            "from sqlalchemy import Engine, event",
            "from sqlalchemy.orm import Session, sessionmaker",
            "from sqlalchemy.exc import DBAPIError",
            "session.execute_select = 1",
            "other.select(x)",
        ]
    )
    assert query_builders(source) == []
